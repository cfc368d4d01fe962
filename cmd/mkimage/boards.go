package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/mkimage/mkimage/boards"
)

func init() {
	register(&command{name: "boards", summary: "list the supported boards", run: runBoards})
}

func runBoards(args []string) error {
	fs := newFlags("boards", "boards [--json]")
	asJSON := fs.Bool("json", false, "print the board data as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	all, err := boards.All()
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(all)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "BOARD\tSOC\tDTB\tCONSOLE\tBOOTLOADER\tDESCRIPTION")
	for _, b := range all {
		bl := "none (firmware)"
		if len(b.Bootloader.Writes) > 0 {
			bl = fmt.Sprintf("%s at byte %d", b.Bootloader.Format, b.Bootloader.Writes[0].To)
			if b.Bootloader.Required {
				bl += ", required"
			}
		}
		dtb := b.DTB
		if dtb == "" {
			dtb = "(from firmware)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, b.SoC, dtb, b.Console, bl, b.Description)
	}
	return w.Flush()
}
