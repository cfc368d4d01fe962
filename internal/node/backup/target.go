package backup

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Kind is how a target stores snapshots.
type Kind string

const (
	// KindBtrfs: the target directory is on btrfs; snapshots are received
	// subvolumes DIR/NAME.
	KindBtrfs Kind = "btrfs"
	// KindFiles: any other filesystem; snapshots are zstd-compressed send
	// streams DIR/NAME.full.btrfs.zst and DIR/NAME.from-PARENT.btrfs.zst.
	KindFiles Kind = "file"
)

const streamExt = ".btrfs.zst"

// names matches the snapshot names of one prefix: PREFIX-YYYYMMDD-HHMMSS,
// which sort oldest first as strings.
type names struct{ re, file *regexp.Regexp }

func newNames(prefix string) (names, error) {
	if prefix == "" || strings.ContainsAny(prefix, "/ \t\n'\"\\*?[") || strings.HasPrefix(prefix, ".") || strings.HasPrefix(prefix, "-") {
		return names{}, fmt.Errorf("backup: snapshot prefix %q: want a plain name", prefix)
	}
	n := regexp.QuoteMeta(prefix) + `-[0-9]{8}-[0-9]{6}`
	return names{
		re:   regexp.MustCompile(`^` + n + `$`),
		file: regexp.MustCompile(`^(` + n + `)\.(full|from-(` + n + `))` + regexp.QuoteMeta(streamExt) + `$`),
	}, nil
}

// streamFile is one complete stream file on a file target.
type streamFile struct {
	file, name, parent string // parent "" for a full stream
}

func fileName(name, parent string) string {
	if parent == "" {
		return name + ".full" + streamExt
	}
	return name + ".from-" + parent + streamExt
}

// remote is what a target holds, as one survey found it.
type remote struct {
	kind Kind
	// btrfs: complete subvolumes by name, with their Received UUID.
	received map[string]string
	// btrfs: subvolumes of our names without a Received UUID (receives
	// that were cut); file: .part files. Deleted before an export.
	incomplete []string
	// file: complete stream files by snapshot name.
	files map[string][]streamFile
	// other entries of our names that are not subvolumes (never touched).
	odd []string
}

// surveyScript prints the target's filesystem type and its entries:
// "subvol RECEIVED-UUID NAME" ("-" when unset) for each subvolume on a
// btrfs target, "file NAME" for each file on another one.
const surveyScript = `t=$(stat -f -c %T .) || exit 3
echo "fs $t"
if [ "$t" = btrfs ]; then
	for d in *; do
		[ -d "$d" ] && [ ! -L "$d" ] || continue
		if s=$(btrfs subvolume show -- "$d" 2>/dev/null); then
			u=$(printf '%s\n' "$s" | sed -n 's/^[[:space:]]*Received UUID:[[:space:]]*//p')
			echo "subvol ${u:--} $d"
		else
			echo "dir $d"
		fi
	done
else
	for f in *; do
		if [ -f "$f" ]; then echo "file $f"; fi
	done
fi
exit 0
`

// survey asks the target what it holds (one ssh, under the lock).
func (e *run) survey(ctx context.Context) (*remote, error) {
	out, err := pipeline(ctx, stage{argv: e.t.sshArgs(lockPrologue(e.t.Dir) + surveyScript)})
	if err != nil {
		return nil, fmt.Errorf("backup: survey %s: %w", e.t, err)
	}
	r := &remote{received: map[string]string{}, files: map[string][]streamFile{}}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.SplitN(l, " ", 3)
		switch {
		case len(f) == 2 && f[0] == "fs":
			r.kind = KindFiles
			if f[1] == "btrfs" {
				r.kind = KindBtrfs
			}
		case len(f) == 3 && f[0] == "subvol" && e.n.re.MatchString(f[2]):
			if f[1] == "-" {
				r.incomplete = append(r.incomplete, f[2])
			} else {
				r.received[f[2]] = f[1]
			}
		case len(f) == 2 && f[0] == "dir" && e.n.re.MatchString(f[1]):
			r.odd = append(r.odd, f[1])
		case len(f) == 2 && f[0] == "file":
			if base, ok := strings.CutSuffix(f[1], ".part"); ok && e.n.file.MatchString(base) {
				r.incomplete = append(r.incomplete, f[1])
			} else if m := e.n.file.FindStringSubmatch(f[1]); m != nil {
				r.files[m[1]] = append(r.files[m[1]], streamFile{file: f[1], name: m[1], parent: m[3]})
			}
		}
	}
	if r.kind == "" {
		return nil, fmt.Errorf("backup: survey %s: no filesystem type in the answer %q", e.t, out)
	}
	return r, nil
}

// chain is the stream files that rebuild name on a file target, full
// first; nil when none resolves (a parent missing). A full stream is
// preferred, then the newest parent that resolves.
func (r *remote) chain(name string) []streamFile {
	return r.chainSeen(name, map[string]bool{})
}

func (r *remote) chainSeen(name string, seen map[string]bool) []streamFile {
	if seen[name] {
		return nil // a loop of from- names: never a chain
	}
	seen[name] = true
	defer delete(seen, name)
	fs := append([]streamFile(nil), r.files[name]...)
	sort.Slice(fs, func(i, j int) bool {
		if (fs[i].parent == "") != (fs[j].parent == "") {
			return fs[i].parent == ""
		}
		return fs[i].parent > fs[j].parent
	})
	for _, f := range fs {
		if f.parent == "" {
			return []streamFile{f}
		}
		if c := r.chainSeen(f.parent, seen); c != nil {
			return append(c, f)
		}
	}
	return nil
}

// complete lists the snapshots the target can give back, oldest first.
func (r *remote) complete() []string {
	var out []string
	if r.kind == KindBtrfs {
		for n := range r.received {
			out = append(out, n)
		}
	} else {
		for n := range r.files {
			if r.chain(n) != nil {
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out
}

// prunable is what retention removes when the target keeps the newest
// keep snapshots: subvolume names, or stream files no kept snapshot's
// chain needs (an incremental's parents stay as long as it does).
func (r *remote) prunable(keep int) []string {
	if keep <= 0 {
		return nil
	}
	have := r.complete()
	if r.kind == KindBtrfs {
		if len(have) <= keep {
			return nil
		}
		return have[:len(have)-keep]
	}
	needed := map[string]bool{}
	start := max(len(have)-keep, 0)
	for _, n := range have[start:] {
		for _, f := range r.chain(n) {
			needed[f.file] = true
		}
	}
	var out []string
	for _, fs := range r.files {
		for _, f := range fs {
			if !needed[f.file] {
				out = append(out, f.file)
			}
		}
	}
	sort.Strings(out)
	return out
}
