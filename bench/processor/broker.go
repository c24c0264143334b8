package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The broker is a JVM started for the bench. Its JIT compiler goes on compiling the broker's hot code for
// minutes, on the same 2 cores as the peers, and the more of the broker a configuration uses the longer:
// exactly_once runs the transaction coordinator, transaction markers and produce verification, none of which
// the ceilings' tools or at_least_once exercise. So every run records the broker's CPU time and the part of it
// its compiler threads took, and the warm-up rounds go on until the compiler is mostly done (warmJITShare).

// warmJITShare is the share of the broker's CPU its JIT compiler may take during a warm-up round for the broker
// to count as warm. Measured with async-profiler on a fresh broker draining 100 B backlogs in turn with
// exactly_once and at_least_once: about 40% in the first minute, 5-20% after the second.
const warmJITShare = 0.10

// findJVM returns the java process that is pid or runs below it (an image may start the JVM from a script). A
// process below pid that exits while it looks is passed over.
func findJVM(pid int) (int, error) {
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		comm, _, err := statCPU(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil && p == pid {
			return 0, err
		}
		if comm == "java" {
			return p, nil
		}
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, t := range tasks {
			children, _ := os.ReadFile(t)
			for _, c := range strings.Fields(string(children)) {
				if n, err := strconv.Atoi(c); err == nil {
					queue = append(queue, n)
				}
			}
		}
	}
	return 0, fmt.Errorf("no java process at or below process %d", pid)
}

// brokerJVM finds the broker's JVM on this host; zero with an error where /proc does not show it (a Docker
// engine in a VM), in which case runs carry no broker CPU figures.
func (b *bench) brokerJVM(ctx context.Context) (int, error) {
	pid, err := b.cluster.BrokerPID(ctx, 1)
	if err != nil {
		return 0, err
	}
	return findJVM(pid)
}

// brokerCPU is the broker JVM's CPU time so far and the part of it its JIT compiler threads took, in seconds;
// zeros when the JVM is not readable.
func (b *bench) brokerCPU() (total, jit float64) {
	if b.jvm == 0 {
		return 0, 0
	}
	_, total, err := statCPU(fmt.Sprintf("/proc/%d/stat", b.jvm))
	if err != nil {
		return 0, 0
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", b.jvm))
	for _, t := range tasks {
		// HotSpot's "C1 CompilerThread0" and "C2 CompilerThread0", cut to 15 bytes by the kernel.
		if comm, s, err := statCPU(t); err == nil && strings.Contains(comm, "CompilerThre") {
			jit += s
		}
	}
	return total, jit
}

// statCPU reads a /proc stat file: the command name and the CPU time (user+system) in seconds.
func statCPU(path string) (comm string, seconds float64, err error) {
	stat, err := os.ReadFile(path)
	if err != nil {
		return "", 0, fmt.Errorf("cpu time: %w", err)
	}
	// The command name is in parentheses and may hold spaces: utime and stime are the 14th and 15th fields of
	// the line, the 12th and 13th after ")".
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[end+1:]))
	if open < 0 || end < open || len(f) < 13 {
		return "", 0, fmt.Errorf("cpu time: unexpected %s: %q", path, stat)
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	const userHZ = 100 // clock ticks per second (sysconf CLK_TCK): 100 on every Linux architecture Go supports
	return string(stat[open+1 : end]), (utime + stime) / userHZ, nil
}
