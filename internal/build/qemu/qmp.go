package qemu

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ErrWatchdog is returned (by Wait, and in Expect's error) when the
// guest's watchdog fired: the guest stopped feeding it.
var ErrWatchdog = errors.New("the guest's watchdog fired")

// events reads QEMU's QMP events from a unix socket, for what the serial
// console cannot show: that the watchdog fired. QEMU runs with
// -no-reboot, so the reset the watchdog asks for ends the run, exactly
// like a guest reboot; only the WATCHDOG event tells them apart.
type events struct {
	mu       sync.Mutex
	watchdog string // the action of the first WATCHDOG event, "" for none
	done     chan struct{}
}

// watchEvents connects to QEMU's QMP socket (retrying while QEMU starts)
// and records events until QEMU closes it.
func watchEvents(socket string, stop <-chan struct{}) *events {
	e := &events{done: make(chan struct{})}
	go func() {
		defer close(e.done)
		var conn net.Conn
		for {
			var err error
			if conn, err = net.Dial("unix", socket); err == nil {
				break
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		defer conn.Close()
		go func() {
			<-stop
			conn.Close()
		}()
		// Events flow once capabilities are negotiated; QEMU's greeting
		// comes first.
		r := bufio.NewReader(conn)
		if _, err := r.ReadBytes('\n'); err != nil {
			return
		}
		if _, err := conn.Write([]byte(`{"execute":"qmp_capabilities"}` + "\n")); err != nil {
			return
		}
		dec := json.NewDecoder(r)
		for {
			var msg struct {
				Event string `json:"event"`
				Data  struct {
					Action string `json:"action"`
				} `json:"data"`
			}
			if err := dec.Decode(&msg); err != nil {
				return
			}
			if msg.Event == "WATCHDOG" {
				e.mu.Lock()
				if e.watchdog == "" {
					e.watchdog = msg.Data.Action
				}
				e.mu.Unlock()
			}
		}
	}()
	return e
}

// fired waits up to wait for the reader to see QEMU's last events, and
// returns the watchdog's action, "" if it did not fire.
func (e *events) fired(wait time.Duration) string {
	select {
	case <-e.done:
	case <-time.After(wait):
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.watchdog
}

// watchdogError says what a fired watchdog did to the run.
func watchdogError(action string) error {
	if action == "reset" {
		return fmt.Errorf("%w (action reset): the guest stopped feeding it and was reset; QEMU runs with -no-reboot, so the reset ends the run", ErrWatchdog)
	}
	return fmt.Errorf("%w (action %s)", ErrWatchdog, action)
}
