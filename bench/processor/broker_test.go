package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStatCPU(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, line, comm string
		seconds          float64
		bad              bool
	}{
		// utime 250 and stime 50 ticks: the 14th and 15th fields.
		{"thread name with spaces", "4242 (C2 CompilerThre) S 1 4242 4242 0 -1 4194624 100 0 0 0 250 50 0 0 20 0 40 0", "C2 CompilerThre", 3, false},
		{"parentheses in the name", "7 (a) (b)) R 1 7 7 0 -1 0 0 0 0 0 100 100 0 0 20 0 1 0", "a) (b)", 2, false},
		{"cut short", "7 (java) S 1 7", "", 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
			if err := os.WriteFile(path, []byte(c.line+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			comm, seconds, err := statCPU(path)
			if c.bad {
				if err == nil {
					t.Fatalf("statCPU(%q) = %q, %v; want an error", c.line, comm, seconds)
				}
				return
			}
			if err != nil || comm != c.comm || seconds != c.seconds {
				t.Fatalf("statCPU(%q) = %q, %v, %v; want %q, %v", c.line, comm, seconds, err, c.comm, c.seconds)
			}
		})
	}
}

func TestFindJVMRefusesAProcessTreeWithoutJava(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	if pid, err := findJVM(os.Getpid()); err == nil {
		t.Fatalf("findJVM(the test itself) = %d, want an error: no java process runs at or below it", pid)
	}
}
