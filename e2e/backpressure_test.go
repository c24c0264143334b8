package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBackpressureKeepsBatchesWithinInterval drains a 200,000-record backlog through a slow transform (100 µs a
// record, so about 5,000 records fit a 500 ms batch) with no batch-size cap that would do the controller's job:
// once the rate controller has converged, the 95th percentile batch takes at most 1.2 intervals, memory stays
// bounded, and every record still comes out exactly once.
func TestBackpressureKeepsBatchesWithinInterval(t *testing.T) {
	f := newFixture(t, fixtureOptions{inputPartitions: 6, outputPartitions: 6})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	const n = 200_000
	const interval = 500 * time.Millisecond
	f.produce(ctx, 6, 0, n, nil)
	proc := f.start("bp", map[string]string{
		"PROCESSOR_TEST_COST_PER_RECORD": "100us",
		"PROCESSOR_BATCH_INTERVAL":       interval.String(),
		"PROCESSOR_MAX_BATCH_RECORDS":    "1000000",
		"PROCESSOR_LOG_LEVEL":            "debug",
	})
	f.waitCaughtUp(ctx)
	peakRSS, err := peakRSSBytes(proc.PID())
	if err != nil {
		t.Fatal(err)
	}
	f.stopAll()

	batches, err := batchDurations(proc.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	const converging = 10
	if len(batches) < converging+10 {
		t.Fatalf("only %d batches: the backlog did not last long enough to judge convergence", len(batches))
	}
	settled := slices.Clone(batches[converging:])
	slices.Sort(settled)
	p50, p95 := settled[len(settled)/2], settled[len(settled)*95/100]
	t.Logf("%d batches; after the first %d: p50 %s, p95 %s (interval %s); peak RSS %.1f MiB; first batches %v",
		len(batches), converging, p50, p95, interval, float64(peakRSS)/(1<<20), batches[:converging])
	if p95 > interval*12/10 {
		t.Errorf("p95 batch duration %s after convergence exceeds 1.2 x the %s interval", p95, interval)
	}
	if peakRSS > 200<<20 {
		t.Errorf("peak RSS %.1f MiB: prefetching or carried records are not bounded", float64(peakRSS)/(1<<20))
	}
	if r := f.verdict(ctx, true); !r.OK() {
		t.Fatalf("backpressure run: %s", r)
	}
}

// batchDurations reads the "batch committed" debug lines of a processor log: assembly plus processing, in order.
func batchDurations(logPath string) ([]time.Duration, error) {
	file, err := os.Open(logPath)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var out []time.Duration
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var line struct {
			Msg        string  `json:"msg"`
			Assembly   float64 `json:"assembly"`
			Processing float64 `json:"processing"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "batch committed" {
			continue
		}
		// log/slog's JSON handler writes durations as nanoseconds.
		out = append(out, time.Duration(line.Assembly+line.Processing))
	}
	return out, sc.Err()
}

// peakRSSBytes is the process's resident set high-water mark (VmHWM) from the kernel.
func peakRSSBytes(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak RSS of %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("peak RSS of %d: parse %q: %w", pid, line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("peak RSS of %d: no VmHWM in /proc status", pid)
}
