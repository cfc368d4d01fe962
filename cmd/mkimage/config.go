package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/mkimage/mkimage/internal/cluster"
)

func init() {
	register(&command{name: "config", summary: "check a cluster config and print each node's plan", run: runConfig})
}

func runConfig(args []string) error {
	if len(args) == 0 || args[0] != "check" {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
			fmt.Fprintf(os.Stderr, "Usage: mkimage config check FILE [--json]\n\nExamples:\n%s\n", examples["config check"])
			return nil
		}
		return usagef("config: expected \"check FILE [--json]\"")
	}
	fs := newFlags("config check", "config check FILE [--json]")
	asJSON := fs.Bool("json", false, "print the baked plan (what nodes read) as JSON")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("config check: expected one FILE, got %d arguments", fs.NArg())
	}
	c, err := cluster.Load(fs.Arg(0))
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(c.Bake())
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	// IDENTITY lists the keys each node is found by, in the order first
	// boot tries them (plan.KeyOrder).
	fmt.Fprintln(w, "NAME\tIDENTITY\tMAC\tADDRESS\tROLE\tGATEWAY\tGOVERNOR\tFORWARD\tNAT\tROUTES\tCONTAINERS")
	for _, p := range c.Resolve() {
		fwd := "off"
		if p.IPForward {
			fwd = fmt.Sprintf("on(%s,%d rules)", p.ForwardPolicy, len(p.Forward))
		}
		var routes, cts []string
		for _, r := range p.Routes {
			s := r.Destination
			if r.Via != "" {
				s += " via " + r.Via
			}
			if r.Dev != "" {
				s += " dev " + r.Dev
			}
			routes = append(routes, s)
		}
		if p.LXC != nil {
			for _, ct := range p.LXC.Containers {
				s := ct.Name + "=" + ct.IP
				if ct.IP6 != "" {
					s += "," + ct.IP6
				}
				if len(ct.Runs) > 0 {
					// The node's network, no address of its own.
					s = ct.Name + "(runs:" + strings.Join(ct.Runs, ",") + ")"
				}
				cts = append(cts, s)
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.Name, strings.Join(p.IdentifyBy, ","), dash(p.MAC), p.CIDR(), p.Role, dash(p.Gateway),
			dash(p.Governor), fwd, len(p.NAT), dash(strings.Join(routes, "; ")), dash(strings.Join(cts, " ")))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if rs := c.IngressRoutes(); len(rs) > 0 {
		fmt.Println("\nSERVICES (reached through the gateway's haproxy)")
		for _, r := range rs {
			for _, l := range r.Reached(c.Gateways()) {
				fmt.Println(l)
			}
		}
	}
	if ns := c.ContainerNotes(); len(ns) > 0 {
		fmt.Println("\nCONTAINERS (their roots are built into the image)")
		for _, n := range ns {
			fmt.Println(n)
		}
	}
	for _, n := range c.I2PNotes() {
		fmt.Println("note: " + n)
	}
	fmt.Printf("%s: ok, %d nodes\n", fs.Arg(0), len(c.Nodes))
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
