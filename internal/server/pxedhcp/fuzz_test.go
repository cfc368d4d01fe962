package pxedhcp

import (
	"bytes"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/mkimage/mkimage/internal/testenv"
)

// FuzzReply parses DHCP packets as the server does and answers them in
// both modes; any reply must itself be a well-formed packet.
func FuzzReply(f *testing.F) {
	for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeRelease} {
		p, err := dhcpv4.New(dhcpv4.WithHwAddr(macA), dhcpv4.WithMessageType(mt),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003000")),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.2"))))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p.ToBytes())
	}
	f.Add(overrun())
	servers := map[Mode]*Server{}
	for _, m := range []Mode{Full, Proxy} {
		s, err := New(config(m, true, &lineLog{}))
		if err != nil {
			f.Fatal(err)
		}
		servers[m] = s
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		for m, s := range servers {
			reply, _ := s.Reply(req)
			if reply == nil {
				continue
			}
			if _, err := dhcpv4.FromBytes(reply.ToBytes()); err != nil {
				t.Fatalf("%s mode: reply does not parse back: %v\n%s", m, err, reply.Summary())
			}
		}
	})
}

// overrun returns a DISCOVER from macA whose last option (host name)
// says 200 bytes and has 3: the packet ends inside it.
func overrun() []byte {
	p, _ := dhcpv4.New(dhcpv4.WithHwAddr(macA), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	b := p.ToBytes()
	b = b[:bytes.LastIndexByte(b, 0xff)] // drop the End option
	return append(b, byte(dhcpv4.OptionHostName), 200, 'a', 'b', 'c')
}

// TestHostileOptions: packets whose options overrun the packet are
// dropped with a line in the log, in bounded memory and time, and the
// server goes on answering well-formed ones.
func TestHostileOptions(t *testing.T) {
	many := func() []byte {
		// A 4 KiB packet of one-byte options ending in a length past the end.
		p, _ := dhcpv4.New(dhcpv4.WithHwAddr(macA), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
		b := p.ToBytes()
		b = b[:bytes.LastIndexByte(b, 0xff)]
		for len(b)+3 <= 4094 {
			b = append(b, byte(dhcpv4.OptionHostName), 1, 'x')
		}
		for len(b) < 4094 {
			b = append(b, byte(dhcpv4.OptionPad))
		}
		return append(b, byte(dhcpv4.OptionClassIdentifier), 255)
	}()
	shortHeader := binary.BigEndian.AppendUint32([]byte{1, 1, 6, 0}, 0x12345678)
	hostile := [][]byte{overrun(), many, shortHeader}
	testenv.Bounded(t, 1<<20, 100*time.Millisecond, func() {
		for _, b := range hostile {
			if _, err := dhcpv4.FromBytes(b); err == nil {
				t.Errorf("%d-byte packet with an overrunning option parsed", len(b))
			}
		}
	})

	lw := &lineLog{}
	s, err := New(config(Full, false, lw))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(conn, stop) }()
	defer func() {
		close(stop)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	cli, err := net.Dial("udp4", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	good, _ := dhcpv4.New(dhcpv4.WithHwAddr(macA), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	for _, b := range append(hostile, good.ToBytes()) {
		if _, err := cli.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// The OFFER goes to the broadcast address, which loopback may not
	// send; the log line is written either way.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(lw.String(), "DISCOVER from 52:54:00:12:34:01 (node01): OFFER 10.77.0.2") {
		if time.Now().After(deadline) {
			t.Fatalf("no OFFER for the well-formed DISCOVER after the hostile ones; log:\n%s", lw)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(lw.String(), "dhcp: dropped a malformed packet from 127.0.0.1:"); n != len(hostile) {
		t.Errorf("%d packets dropped in the log, want %d:\n%s", n, len(hostile), lw)
	}
	t.Logf("log:\n%s", lw)
}
