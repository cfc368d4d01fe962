// Command tftpget is the nodes of bench/netboot.sh: N clients at once,
// each fetching the same files in turn from one TFTP server, as U-Boot's
// PXE flow does (boot script, pxelinux file, initramfs, kernel, device
// tree), with the block and window size U-Boot would ask for:
//
//	tftpget -server 10.79.0.1:69 -clients 46 -blksize 1468 -window 16 FILE...
//
// -window 0 asks for no window size (RFC 7440), for servers without it.
// Prints one line: wall seconds, payload bytes received, failed clients.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"pack.ag/tftp"
)

func main() {
	server := flag.String("server", "", "TFTP server host:port")
	clients := flag.Int("clients", 46, "clients fetching at once")
	blksize := flag.Int("blksize", 1468, "TFTP block size to ask for")
	window := flag.Int("window", 16, "TFTP window size to ask for (0: none)")
	flag.Parse()
	if *server == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: tftpget -server HOST:PORT [-clients N] [-blksize B] [-window W] FILE...")
		os.Exit(2)
	}
	opts := []tftp.ClientOpt{tftp.ClientBlocksize(*blksize), tftp.ClientTransferSize(true)}
	if *window > 0 {
		opts = append(opts, tftp.ClientWindowsize(*window))
	}
	var bytes atomic.Int64
	var failed atomic.Int32
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := node(*server, opts, flag.Args(), &bytes); err != nil {
				fmt.Fprintf(os.Stderr, "tftpget: client %d: %v\n", i, err)
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("%.2f %d %d\n", time.Since(start).Seconds(), bytes.Load(), failed.Load())
}

// node fetches the files one after the other, as one booting node does.
func node(server string, opts []tftp.ClientOpt, files []string, total *atomic.Int64) error {
	c, err := tftp.NewClient(opts...)
	if err != nil {
		return err
	}
	for _, f := range files {
		r, err := c.Get("tftp://" + server + "/" + f)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		n, err := io.Copy(io.Discard, r)
		total.Add(n)
		if err != nil {
			return fmt.Errorf("%s: after %d bytes: %w", f, n, err)
		}
	}
	return nil
}
