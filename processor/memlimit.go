package processor

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryLimits are where a container's memory limit is read: cgroup v2, then v1.
var cgroupMemoryLimits = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// containerMemoryLimit is the memory limit of the container the process runs in, if it has one.
func containerMemoryLimit(readFile func(string) ([]byte, error)) (int64, bool) {
	for _, path := range cgroupMemoryLimits {
		b, err := readFile(path)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		// "max" (v2) or a page-rounded MaxInt64 (v1) mean no limit.
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// heapShare is the share of the container's memory limit given to the Go heap; librdkafka's buffers, C memory the
// Go runtime does not count, need the rest.
const heapShare = 0.75

// limitHeapToContainer sets the Go heap's soft limit to heapShare of the container's memory limit unless
// GOMEMLIMIT is set. Without a limit the heap grows to twice its live size between collections, and a container
// near its limit is killed instead of collecting sooner.
func limitHeapToContainer() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if limit, ok := containerMemoryLimit(os.ReadFile); ok {
		debug.SetMemoryLimit(int64(heapShare * float64(limit)))
	}
}

// goMemoryLimit is the Go heap's soft limit in force, for the start-up log: "none", or bytes.
func goMemoryLimit() string {
	if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		return strconv.FormatInt(limit, 10)
	}
	return "none"
}
