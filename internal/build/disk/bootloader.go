package disk

import (
	"fmt"
	"io"
	"sort"

	"github.com/mkimage/mkimage/internal/ondisk"

	"github.com/mkimage/mkimage/boards"
)

// Placement is one resolved copy of blob bytes [From, From+Length) to disk
// offset To.
type Placement struct {
	From   int64 `json:"from"`
	Length int64 `json:"length"`
	To     int64 `json:"to"`
}

// tableRange is never the bootloader's, whatever a board file says: the
// disk identifier and partition table are ours.
var tableRange = boards.Range{Offset: ondisk.TableOffset, Length: ondisk.TableLength, Why: "MBR disk identifier, partition table and signature"}

// PlaceBootloader resolves the board's writes for a blob of blobSize bytes
// and checks them: every source range inside the blob, no destination byte
// in a protected range (the board's, plus bytes 440..511 always), none at
// or past partition 1's start, no two writes over each other.
func PlaceBootloader(board *boards.Board, blobName string, blobSize int64) ([]Placement, error) {
	bl := board.Bootloader
	first := board.FirstPartitionOffset()
	var out []Placement
	for i, w := range bl.Writes {
		n := w.Length
		if n == 0 {
			n = blobSize - w.From
		}
		if w.From < 0 || w.To < 0 || n < 0 || w.From+n > blobSize {
			return nil, fmt.Errorf("blob %s is %d bytes; board %s write %d wants its bytes %d..%d", blobName, blobSize, board.Name, i, w.From, w.From+max(n, 1)-1)
		}
		if n == 0 {
			continue
		}
		end := w.To + n
		if end > first {
			return nil, fmt.Errorf("blob %s is %d bytes; its bytes reach offset %d but partition 1 starts at %d", blobName, blobSize, end, first)
		}
		for _, p := range append([]boards.Range{tableRange}, bl.Protect...) {
			if w.To < p.Offset+p.Length && p.Offset < end {
				return nil, fmt.Errorf("blob %s: board %s write %d (disk bytes %d..%d) overlaps %d..%d, the %s", blobName, board.Name, i, w.To, end-1, p.Offset, p.Offset+p.Length-1, p.Why)
			}
		}
		out = append(out, Placement{From: w.From, Length: n, To: w.To})
	}
	s := append([]Placement(nil), out...)
	sort.Slice(s, func(i, j int) bool { return s[i].To < s[j].To })
	for i := 1; i < len(s); i++ {
		if s[i].To < s[i-1].To+s[i-1].Length {
			return nil, fmt.Errorf("board %s: bootloader writes to %d and %d overlap", board.Name, s[i-1].To, s[i].To)
		}
	}
	return out, nil
}

// WriteBootloader copies the blob's bytes to where the board wants them.
// Every check runs before the first write, so a bad blob leaves the disk
// untouched. A board without writes writes nothing.
func WriteBootloader(w io.WriterAt, board *boards.Board, blobName string, blob []byte) ([]ondisk.Range, error) {
	ps, err := PlaceBootloader(board, blobName, int64(len(blob)))
	if err != nil {
		return nil, err
	}
	var out []ondisk.Range
	for _, p := range ps {
		if _, err := w.WriteAt(blob[p.From:p.From+p.Length], p.To); err != nil {
			return out, fmt.Errorf("writing blob %s at disk offset %d: %w", blobName, p.To, err)
		}
		out = append(out, ondisk.Range{Offset: p.To, Length: p.Length})
	}
	return out, nil
}
