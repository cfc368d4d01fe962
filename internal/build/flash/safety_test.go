package flash

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeSys builds a /proc and /sys tree: sdb (removable card, partitions
// sdb1 and sdb2) and sda (internal disk), plus the given mountinfo and
// swaps, and whatever extra files a case adds.
func fakeSys(t *testing.T, mountinfo, swaps string, extra map[string]string) Sys {
	root := t.TempDir()
	files := map[string]string{
		"sys/block/sdb/dev":              "8:16",
		"sys/block/sdb/size":             "62521344", // 32 GB card
		"sys/block/sdb/removable":        "1",
		"sys/block/sdb/device/model":     "SD/MMC Reader  ",
		"sys/block/sdb/sdb1/dev":         "8:17",
		"sys/block/sdb/sdb1/partition":   "1",
		"sys/block/sdb/sdb2/dev":         "8:18",
		"sys/block/sdb/sdb2/partition":   "2",
		"sys/block/sdb/queue/rotational": "0", // a directory that is not a partition
		"sys/block/sda/dev":              "8:0",
		"sys/block/sda/size":             "976773168", // 500 GB
		"sys/block/sda/removable":        "0",
		"sys/block/sda/sda1/dev":         "8:1",
		"sys/block/sda/sda1/partition":   "1",
		"proc/self/mountinfo":            mountinfo,
		"proc/swaps":                     "Filename\tType\tSize\tUsed\tPriority\n" + swaps,
	}
	for k, v := range extra {
		files[k] = v
	}
	for p, c := range files {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if c == "<dir>" {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(c+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Sys{Root: root}
}

const baseMounts = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw - proc proc rw
`

func TestDisk(t *testing.T) {
	s := fakeSys(t, baseMounts, "", nil)
	d, err := s.Disk("sdb")
	if err != nil {
		t.Fatal(err)
	}
	want := &Disk{Name: "sdb", Dev: "8:16", Size: 62521344 * 512, Removable: true, Model: "SD/MMC Reader",
		Parts: []Part{{"sdb1", "8:17"}, {"sdb2", "8:18"}}}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Disk(sdb) = %+v, want %+v", d, want)
	}
	if _, err := s.Disk("sdz"); err == nil || !strings.Contains(err.Error(), "sdz") {
		t.Errorf("Disk(sdz) = %v, want an error naming sdz", err)
	}
}

func TestProblems(t *testing.T) {
	tests := []struct {
		name      string
		disk      string
		mountinfo string
		swaps     string
		extra     map[string]string
		maxSize   int64
		want      []string // substrings, one per problem, in order
	}{
		{name: "clean card", disk: "sdb", mountinfo: baseMounts},
		{name: "partition mounted", disk: "sdb",
			mountinfo: baseMounts + `40 22 8:17 / /media/boot rw - vfat /dev/sdb1 rw` + "\n",
			want:      []string{"/dev/sdb1 is mounted on /media/boot"}},
		{name: "mount point with space", disk: "sdb",
			mountinfo: baseMounts + `40 22 8:16 / /media/my\040card rw - vfat /dev/sdb rw` + "\n",
			want:      []string{"mounted on /media/my card"}},
		{name: "btrfs anonymous device", disk: "sdb",
			mountinfo: baseMounts + `41 22 0:45 / /mnt rw - btrfs /dev/sdb2 rw` + "\n",
			want:      []string{"/dev/sdb2 is mounted on /mnt"}},
		{name: "running root", disk: "sda", mountinfo: baseMounts, maxSize: 1 << 40,
			want: []string{"holds the running system's root", "not removable"}},
		{name: "swap partition", disk: "sdb", mountinfo: baseMounts,
			swaps: "/dev/sdb2\tpartition\t1048572\t0\t-2",
			want:  []string{"/dev/sdb2 is in use as swap"}},
		{name: "swap file elsewhere", disk: "sdb", mountinfo: baseMounts,
			swaps: "/swapfile\tfile\t1048572\t0\t-2"},
		{name: "device mapper holder", disk: "sdb", mountinfo: baseMounts,
			extra: map[string]string{"sys/block/sdb/sdb2/holders/dm-0": "<dir>"},
			want:  []string{"used by /dev/dm-0"}},
		{name: "too large", disk: "sdb", mountinfo: baseMounts, maxSize: 16 << 30,
			want: []string{"larger than --max-size 17.2 GB"}},
		{name: "internal disk not mounted", disk: "sda", mountinfo: "23 1 0:21 / /proc rw - proc proc rw\n",
			want: []string{"not removable", "larger than --max-size"}, maxSize: DefaultMaxSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakeSys(t, tt.mountinfo, tt.swaps, tt.extra)
			d, err := s.Disk(tt.disk)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Problems(d, tt.maxSize)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Problems = %q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestProblemsNeedsMountinfo(t *testing.T) {
	s := fakeSys(t, "", "", nil)
	os.Remove(filepath.Join(s.Root, "proc/self/mountinfo"))
	d, err := s.Disk("sdb")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Problems(d, 0); err == nil {
		t.Error("no error without /proc/self/mountinfo: a disk must not look safe when we cannot tell")
	}
}

func TestCheck(t *testing.T) {
	const img = 100 << 20
	card := func(path string, size int64, probs ...string) Target {
		return Target{Path: path, Block: true, Size: size, Problems: probs, id: "dev " + path}
	}
	file := func(path string) Target { return Target{Path: path} }
	tests := []struct {
		name    string
		targets []Target
		force   bool
		want    []string // substrings of the error; none: no error
	}{
		{"fine", []Target{card("/dev/sdb", 32e9), file("out.img")}, false, nil},
		{"exact size", []Target{card("/dev/sdb", img)}, false, nil},
		{"too small", []Target{card("/dev/sdb", 32e9), card("/dev/sdc", img-512)}, false,
			[]string{"/dev/sdc is 104.9 MB (100.0 MiB), smaller than the image"}},
		{"too small even forced", []Target{card("/dev/sdc", 1<<20)}, true, []string{"smaller than the image"}},
		{"problem", []Target{card("/dev/sda", 32e9, "sda is not removable")}, false,
			[]string{"/dev/sda: sda is not removable", "pass --force"}},
		{"problem forced", []Target{card("/dev/sda", 32e9, "sda is not removable")}, true, nil},
		{"same file twice", []Target{file("a.img"), file("./a.img")}, false, []string{"a.img and ./a.img are the same target"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.targets, img, tt.force)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check = nil, want error with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}
