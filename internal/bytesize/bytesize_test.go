package bytesize

import "testing"

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4MiB", 4 << 20, true}, {"256M", 256 << 20, true}, {"1G", 1 << 30, true},
		{"512K", 512 << 10, true}, {"4096", 4096, true}, {"2GiB", 2 << 30, true},
		{"128GiB", 128 << 30, true}, {"64GB", 64e9, true}, {"256MB", 256e6, true},
		{"1.5G", 3 << 29, true}, {"10 MiB", 10 << 20, true}, {"7b", 7, true},
		{"", 0, false}, {"-1M", 0, false}, {"lots", 0, false}, {"GiB", 0, false},
		{"12 parsecs", 0, false}, {"0.3B", 0, false}, {"9999999T", 0, false},
		{"1.2.3M", 0, false},
	} {
		got, err := Parse(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("Parse(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		in   int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {4096, "4.0 KiB"}, {10 << 10, "10 KiB"},
		{356 << 20, "356 MiB"}, {1536 << 20, "1.5 GiB"}, {3 << 40, "3.0 TiB"}, {5000 << 40, "5000 TiB"},
	} {
		if got := Format(tt.in); got != tt.want {
			t.Errorf("Format(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
