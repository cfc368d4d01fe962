// Package qemu boots arm64 images and kernels in qemu-system-aarch64
// (-M virt) and reads the serial console, for tests and `mkimage qemu`.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// UBoot is Debian's u-boot-qemu build for the virt machine.
const UBoot = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"

// Options describe one VM.
type Options struct {
	// Disk is a raw image attached as a virtio block device (read-write:
	// pass a copy, see CopyImage).
	Disk string
	// Kernel, Initrd and Append boot a kernel directly with QEMU's own
	// device tree. Without Kernel the VM boots Bios (default UBoot),
	// which finds the boot partition on Disk.
	Kernel, Initrd, Append string
	Bios                   string
	// DTB replaces QEMU's own device tree (-dtb). Under U-Boot the
	// firmware gets it and hands it on to the kernel. Make one from
	// QEMU's with DumpDTB, so it matches the machine.
	DTB string
	// MemoryMiB defaults to 1024, CPU to "cortex-a53", SMP to 1.
	MemoryMiB int
	CPU       string
	SMP       int
	// MAC of the virtio-net device; a user-mode network is attached
	// always.
	MAC string
	// Isolated cuts the user-mode network off from the host and the
	// internet (restrict=on): a guest whose services would go out (i2pd
	// reseeding, NTP) stays inside the test.
	Isolated bool
	// GuestForward are user-mode network guestfwd rules,
	// "tcp:10.0.2.100:22-tcp:127.0.0.1:2222": the guest reaches a host
	// service at an address of its own network, Isolated or not.
	GuestForward []string
	// Console receives everything the serial console prints.
	Console io.Writer
	// Binary defaults to qemu-system-aarch64.
	Binary string
	// Watchdog adds an i6300esb PCI watchdog whose firing resets the
	// guest; under -no-reboot that ends the run, which Wait and Expect
	// then report as ErrWatchdog.
	Watchdog bool
	// Extra arguments appended to the command line.
	Extra []string
}

// Args returns the qemu command line for o.
func (o Options) Args() []string {
	mem, cpu, smp := o.MemoryMiB, o.CPU, o.SMP
	if mem == 0 {
		mem = 1024
	}
	if cpu == "" {
		cpu = "cortex-a53"
	}
	if smp == 0 {
		smp = 1
	}
	args := []string{"-M", "virt", "-cpu", cpu, "-smp", fmt.Sprint(smp), "-m", fmt.Sprint(mem),
		"-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio"}
	if o.Kernel != "" {
		args = append(args, "-kernel", o.Kernel)
		if o.Initrd != "" {
			args = append(args, "-initrd", o.Initrd)
		}
		if o.Append != "" {
			args = append(args, "-append", o.Append)
		}
	} else {
		bios := o.Bios
		if bios == "" {
			bios = UBoot
		}
		args = append(args, "-bios", bios)
	}
	if o.DTB != "" {
		args = append(args, "-dtb", o.DTB)
	}
	if o.Disk != "" {
		// virtio-blk-device (virtio-mmio): U-Boot and Linux both find
		// it without PCI.
		args = append(args, "-drive", "if=none,file="+o.Disk+",format=raw,id=hd0", "-device", "virtio-blk-device,drive=hd0")
	}
	// virtio-net-device: with virtio-net-pci U-Boot reports a wrong MAC.
	nic := "virtio-net-device,netdev=n0"
	if o.MAC != "" {
		nic += ",mac=" + o.MAC
	}
	netdev := "user,id=n0"
	if o.Isolated {
		netdev += ",restrict=on"
	}
	for _, f := range o.GuestForward {
		netdev += ",guestfwd=" + f
	}
	args = append(args, "-netdev", netdev, "-device", nic)
	if o.Watchdog {
		// reset is QEMU's default action; said here because the
		// reporting depends on it.
		args = append(args, "-device", "i6300esb", "-action", "watchdog=reset")
	}
	return append(args, o.Extra...)
}

// DumpDTB writes the device tree QEMU makes for the machine o describes
// (-machine dumpdtb) to file, without booting it: the start of a tree
// for Options.DTB.
func DumpDTB(ctx context.Context, o Options, file string) error {
	bin := o.Binary
	if bin == "" {
		bin = "qemu-system-aarch64"
	}
	o.DTB = ""
	args := append(o.Args(), "-machine", "dumpdtb="+file)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -machine dumpdtb=%s: %w: %s", bin, file, err, strings.TrimSpace(string(out)))
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() == 0 {
		return fmt.Errorf("%s wrote no device tree to %s", bin, file)
	}
	return nil
}

// VM is a running QEMU.
type VM struct {
	Console *Console
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	done    chan struct{}
	err     error // set before done closes
}

// Start starts QEMU. Cancelling ctx kills it.
func Start(ctx context.Context, o Options) (*VM, error) {
	bin := o.Binary
	if bin == "" {
		bin = "qemu-system-aarch64"
	}
	for _, f := range []string{o.Disk, o.Kernel, o.Initrd, o.DTB} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("qemu: %w", err)
		}
	}
	if o.Kernel == "" {
		bios := o.Bios
		if bios == "" {
			bios = UBoot
		}
		if _, err := os.Stat(bios); err != nil {
			return nil, fmt.Errorf("qemu firmware: %w (Debian package u-boot-qemu)", err)
		}
	}
	args := o.Args()
	var qmpDir string
	if o.Watchdog {
		// The QMP socket tells a watchdog reset from a guest reboot.
		var err error
		if qmpDir, err = os.MkdirTemp("", "mkimage-qmp-"); err != nil {
			return nil, err
		}
		args = append(args, "-qmp", "unix:"+filepath.Join(qmpDir, "qmp.sock")+",server=on,wait=off")
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	c := newConsole(o.Console)
	cmd.Stdout = c
	var stderr bytes.Buffer
	cmd.Stderr = io.MultiWriter(c, &stderr)
	// The serial console's input is a pipe (Send), never the terminal:
	// QEMU would put a terminal into raw mode.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		if qmpDir != "" {
			os.RemoveAll(qmpDir)
		}
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	vm := &VM{Console: c, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	var ev *events
	exited := make(chan struct{})
	if qmpDir != "" {
		ev = watchEvents(filepath.Join(qmpDir, "qmp.sock"), exited)
	}
	go func() {
		err := cmd.Wait()
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("%s: %w: %s", bin, err, strings.TrimSpace(stderr.String()))
		}
		if ev != nil {
			// QEMU sent its last events before exiting; the reader
			// sees them and the socket's end.
			if action := ev.fired(time.Second); action != "" && err == nil && ctx.Err() == nil {
				err = watchdogError(action)
				fmt.Fprintf(c, "\r\nqemu: %v\r\n", err)
			}
			close(exited)
			os.RemoveAll(qmpDir)
		}
		vm.err = err
		c.close(err)
		close(vm.done)
	}()
	return vm, nil
}

// Wait waits for QEMU to exit and returns its error (nil on a clean
// exit, such as a guest poweroff).
func (vm *VM) Wait() error {
	<-vm.done
	return vm.err
}

// Send types s on the serial console.
func (vm *VM) Send(s string) error {
	_, err := io.WriteString(vm.stdin, s)
	return err
}

// Done is closed when QEMU has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Kill stops QEMU at once (a power cut for the guest) and waits for it.
func (vm *VM) Kill() {
	vm.cmd.Process.Kill()
	<-vm.done
}

// ErrPanic is returned by Expect when the guest kernel panics.
var ErrPanic = errors.New("kernel panic")

// ErrExited is returned by Expect when QEMU exits first.
var ErrExited = errors.New("qemu exited")

// Console collects the serial output and lets callers wait for text.
type Console struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	pos    int // Expect searches from here
	closed bool
	err    error
	tee    io.Writer
}

func newConsole(tee io.Writer) *Console {
	c := &Console{tee: tee}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *Console) Write(p []byte) (int, error) {
	if c.tee != nil {
		c.tee.Write(p)
	}
	c.mu.Lock()
	c.buf = append(c.buf, p...)
	c.mu.Unlock()
	c.cond.Broadcast()
	return len(p), nil
}

func (c *Console) close(err error) {
	c.mu.Lock()
	c.closed, c.err = true, err
	c.mu.Unlock()
	c.cond.Broadcast()
}

// Expect waits until text appears in the console output after the
// previous match (or the start), and returns the line holding it. It
// fails with ErrPanic on "Kernel panic", ErrExited when QEMU exits, or
// ctx's error; each error carries the last lines of the console.
func (c *Console) Expect(ctx context.Context, text string) (string, error) {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.cond.Broadcast()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	var partial time.Time // when a match on an unfinished line was seen
	for {
		rest := c.buf[c.pos:]
		// A match counts once its line is complete, so the caller
		// gets the whole line; a line that stays unfinished (a prompt
		// such as "login: ") counts after a quiet second.
		if i := bytes.Index(rest, []byte(text)); i >= 0 {
			start := bytes.LastIndexByte(c.buf[:c.pos+i], '\n') + 1
			end := c.pos + i + len(text)
			j := bytes.IndexByte(c.buf[end:], '\n')
			if j < 0 && partial.IsZero() {
				partial = time.Now()
				time.AfterFunc(promptQuiet, func() {
					c.mu.Lock()
					defer c.mu.Unlock()
					c.cond.Broadcast()
				})
			}
			if j >= 0 || c.closed || (!partial.IsZero() && time.Since(partial) >= promptQuiet) {
				if j >= 0 {
					end += j
				} else {
					end = len(c.buf)
				}
				c.pos += i + len(text)
				return strings.TrimRight(string(c.buf[start:end]), "\r"), nil
			}
		}
		if bytes.Contains(rest, []byte("Kernel panic")) {
			return "", c.failure(fmt.Errorf("%w while waiting for %q", ErrPanic, text))
		}
		if c.closed {
			why := ErrExited
			if c.err != nil {
				return "", c.failure(fmt.Errorf("%w before %q appeared: %v", why, text, c.err))
			}
			return "", c.failure(fmt.Errorf("%w before %q appeared", why, text))
		}
		if ctx.Err() != nil {
			return "", c.failure(fmt.Errorf("%q did not appear: %w", text, ctx.Err()))
		}
		c.cond.Wait()
	}
}

// promptQuiet is how long a match on an unfinished line waits for the
// rest of its line before it counts.
const promptQuiet = time.Second

// TailError is an Expect failure with the console's last lines.
type TailError struct {
	Err  error
	Tail []string
}

func (e *TailError) Error() string {
	return fmt.Sprintf("%v; last console lines:\n%s", e.Err, strings.Join(e.Tail, "\n"))
}

func (e *TailError) Unwrap() error { return e.Err }

// failure wraps err with the tail; c.mu is held.
func (c *Console) failure(err error) error {
	return &TailError{Err: err, Tail: tail(c.buf, 30)}
}

// Tail returns the last n lines printed.
func (c *Console) Tail(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return tail(c.buf, n)
}

// String returns everything printed so far.
func (c *Console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}

func tail(b []byte, n int) []string {
	lines := strings.Split(strings.ReplaceAll(strings.TrimRight(string(b), "\n"), "\r", ""), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
