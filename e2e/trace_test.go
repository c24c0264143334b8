package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// sourceInExample finds the input records a verdict's examples name ("input in/0/123 appears 2 times ...").
var sourceInExample = regexp.MustCompile(`input (\S+)/(\d+)/(\d+)`)

// batchRange is one partition's span in a "batch committed" debug line: "in/0:[10,20)".
var batchRange = regexp.MustCompile(`(\S+):\[(\d+),(\d+)\)`)

// explainSources explains a failed verdict from the processors' debug logs: for each input record its examples
// name (a duplicate, a missing record), every committed batch whose input range holds it (which processor, when,
// the batch's ranges), and that partition's assignments, losses, rewinds and first records after them. A
// duplicate shows as two batches holding one record; a loss as none, with the rewind or assignment that skipped
// it.
func explainSources(logDir string, examples []string) string {
	type source struct {
		partition string
		offset    int64
	}
	var sources []source
	for _, ex := range examples {
		if m := sourceInExample.FindStringSubmatch(ex); m != nil {
			off, _ := strconv.ParseInt(m[3], 10, 64)
			sources = append(sources, source{m[1] + "/" + m[2], off})
		}
	}
	if len(sources) == 0 {
		return ""
	}
	logs, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
	var b strings.Builder
	for _, s := range sources {
		fmt.Fprintf(&b, "\n%s/%d:\n", s.partition, s.offset)
		held := 0
		for _, path := range logs {
			f, err := os.Open(path)
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<24)
			for sc.Scan() {
				line := sc.Text()
				var e struct {
					Time, Msg, Input, Partition string
					Partitions                  []string
					Positions                   []string
					Offset                      *int64
				}
				if json.Unmarshal([]byte(line), &e) != nil {
					continue
				}
				switch {
				case e.Msg == "batch committed":
					for _, m := range batchRange.FindAllStringSubmatch(e.Input, -1) {
						first, _ := strconv.ParseInt(m[2], 10, 64)
						next, _ := strconv.ParseInt(m[3], 10, 64)
						if m[1] == s.partition && first <= s.offset && s.offset < next {
							held++
							fmt.Fprintf(&b, "  %s %s: committed in batch %s\n", e.Time, filepath.Base(path), e.Input)
						}
					}
				case e.Partition == s.partition && e.Offset != nil,
					strings.Contains(strings.Join(e.Partitions, " ")+" "+strings.Join(e.Positions, " "), s.partition):
					fmt.Fprintf(&b, "  %s %s: %s\n", e.Time, filepath.Base(path), line)
				}
			}
			f.Close()
		}
		fmt.Fprintf(&b, "  committed by %d batches\n", held)
	}
	return "where the records of the verdict's examples went (processor debug logs):" + b.String()
}

func TestExplainSourcesFindsTheBatchesThatCommittedARecord(t *testing.T) {
	dir := t.TempDir()
	logs := map[string]string{
		"p0.log": `{"time":"t1","msg":"partitions assigned","partitions":["in/0","in/1"],"offsets":[-1001,-1001]}
{"time":"t2","msg":"batch committed","input":"in/0:[0,100) in/1:[0,50)"}
{"time":"t3","msg":"rewound to committed offsets","positions":["in/0@100"]}
not json
`,
		"p1.log": `{"time":"t4","msg":"batch committed","input":"in/0:[90,200)"}
{"time":"t5","msg":"first record since the rewind","partition":"in/0","offset":100}
`,
	}
	for name, text := range logs {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := explainSources(dir, []string{"input in/0/95 appears 2 times (again at out[1]@7)", "input in/1/70 has no output", "no source here"})
	for _, want := range []string{
		"in/0/95:", "t2 p0.log: committed in batch in/0:[0,100) in/1:[0,50)", "t4 p1.log: committed in batch in/0:[90,200)",
		"committed by 2 batches", "in/1/70:", "committed by 0 batches", `"msg":"partitions assigned"`, `"positions":["in/0@100"]`,
		`"msg":"first record since the rewind"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("explanation lacks %q:\n%s", want, got)
		}
	}
	if explainSources(dir, []string{"no source here"}) != "" {
		t.Error("an explanation without any source named")
	}
}
