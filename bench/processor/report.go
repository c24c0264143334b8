package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Results is every figure of one benchmark run; it is what the JSON file holds.
type Results struct {
	Started   time.Time `json:"started"`
	Took      string    `json:"took"`
	Machine   Machine   `json:"machine"`
	Ceilings  []Ceiling `json:"ceilings"`
	Warmups   []Run     `json:"warmups,omitempty"` // the warm-up rounds' drains, before the timed ones, in no median
	Runs      []Run     `json:"throughput"`
	Latencies []Latency `json:"latency"`
	Capacity  Capacity  `json:"capacity"`
	Profile   Profile   `json:"profile"`
	Targets   []Target  `json:"targets"`
}

// Profile is the top of a CPU profile of the processor draining a backlog.
type Profile struct {
	Run string `json:"run"`
	Top string `json:"top"` // go tool pprof -top
}

// Machine describes where the figures were taken.
type Machine struct {
	CPUs        int    `json:"cpus"`
	CPUModel    string `json:"cpu_model"`
	MemoryGiB   string `json:"memory_gib"`
	Kernel      string `json:"kernel"`
	LoadAverage string `json:"load_average_at_start"`
	Go          string `json:"go"`
	Librdkafka  string `json:"librdkafka"`
	KafkaImage  string `json:"kafka_image"`
}

// Target is one of the targets, measured.
type Target struct {
	What     string  `json:"what"`
	Measured float64 `json:"measured"` // of the medians
	Target   string  `json:"target"`
	Met      bool    `json:"met"`
	// Rounds is the same figure in each round (from the runs of one repeat, a few minutes apart at most): how
	// far the rounds scatter around the median says whether a small miss or pass is the machine's noise.
	Rounds []float64 `json:"rounds,omitempty"`
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	_, m.Librdkafka = kafka.LibraryVersion()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%f", &kb)
		m.MemoryGiB = fmt.Sprintf("%.1f", kb/(1<<20))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAverage = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return m
}

// runs returns the runs of peer p on workload.
func (r *Results) runs(workload string, p peer) []Run {
	var out []Run
	for _, run := range r.Runs {
		if run.Workload == workload && run.Peer == p.Name && run.Guarantee == p.Guarantee && run.BatchInterval == p.intervalName() {
			out = append(out, run)
		}
	}
	return out
}

// figures is f of each run, in order.
func figures[T any](runs []T, f func(T) float64) []float64 {
	v := make([]float64, len(runs))
	for i, run := range runs {
		v[i] = f(run)
	}
	return v
}

// medianOf is the median of f over runs.
func medianOf[T any](runs []T, f func(T) float64) float64 {
	v := figures(runs, f)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// median is peer p's runs on workload with each figure replaced by its median over the repeats.
func (r *Results) median(workload string, p peer) Run {
	runs := r.runs(workload, p)
	if len(runs) == 0 {
		return Run{}
	}
	m := runs[0]
	med := func(f func(Run) float64) float64 { return medianOf(runs, f) }
	m.Repeat = len(runs)
	m.Seconds = med(func(r Run) float64 { return r.Seconds })
	m.StartupSeconds = med(func(r Run) float64 { return r.StartupSeconds })
	m.RecordsPerSec = med(func(r Run) float64 { return r.RecordsPerSec })
	m.MBPerSec = med(func(r Run) float64 { return r.MBPerSec })
	m.CPUPerMillion = med(func(r Run) float64 { return r.CPUPerMillion })
	m.PeakRSSMB = med(func(r Run) float64 { return r.PeakRSSMB })
	m.BrokerCPUSeconds = med(func(r Run) float64 { return r.BrokerCPUSeconds })
	m.BrokerJITSeconds = med(func(r Run) float64 { return r.BrokerJITSeconds })
	m.VsCopyCeiling = med(func(r Run) float64 { return r.VsCopyCeiling })
	m.VsBrokerCeiling = med(func(r Run) float64 { return r.VsBrokerCeiling })
	m.Progress = nil
	return m
}

// brokerCells are a run's broker CPU per million records and its JIT compiler's share of it, as two table
// cells ("-" where the broker's CPU was not readable).
func (run Run) brokerCells() string {
	if run.BrokerCPUSeconds == 0 {
		return "- | -"
	}
	return fmt.Sprintf("%.2f | %.0f", run.BrokerCPUSeconds/float64(run.Records)*1e6, 100*run.BrokerJITSeconds/run.BrokerCPUSeconds)
}

// warmupJITShares is, for each warm-up round, the share of the broker's CPU its JIT compiler took (NaN where
// the broker's CPU was not readable).
func (r *Results) warmupJITShares() []float64 {
	var cpu, jit []float64
	for _, run := range r.Warmups {
		for len(cpu) < run.WarmupRound {
			cpu, jit = append(cpu, 0), append(jit, 0)
		}
		if i := run.WarmupRound - 1; i >= 0 {
			cpu[i] += run.BrokerCPUSeconds
			jit[i] += run.BrokerJITSeconds
		}
	}
	shares := make([]float64, len(cpu))
	for i := range cpu {
		shares[i] = math.NaN()
		if cpu[i] > 0 {
			shares[i] = jit[i] / cpu[i]
		}
	}
	return shares
}

// peers lists the distinct configurations measured, in the order they first ran.
func (r *Results) peers() []peer {
	var out []peer
	seen := map[string]bool{}
	for _, run := range r.Runs {
		p := peer{Name: run.Peer, Guarantee: run.Guarantee}
		if run.BatchInterval != "default" {
			p.Interval, _ = time.ParseDuration(run.BatchInterval)
		}
		if !seen[p.String()] {
			seen[p.String()] = true
			out = append(out, p)
		}
	}
	return out
}

func (r *Results) ceiling(workload, tool string) float64 {
	for _, c := range r.Ceilings {
		if c.Workload == workload && c.Tool == tool {
			return c.RecordsPerSec
		}
	}
	return math.NaN()
}

// computeRatios relates each run to the ceilings and checks the throughput issue's targets on the medians.
func (r *Results) computeRatios() {
	r.Targets = nil // computed again when an earlier run is reported again
	for i := range r.Runs {
		run := &r.Runs[i]
		run.VsCopyCeiling = finite(run.RecordsPerSec / r.ceiling(run.Workload, toolGoCopy))
		broker := min(r.ceiling(run.Workload, toolJavaProduce), r.ceiling(run.Workload, toolJavaConsume))
		run.VsBrokerCeiling = finite(run.RecordsPerSec / broker)
	}
	target := func(what string, measured float64, required string, met bool, rounds []float64) {
		if math.IsNaN(measured) || math.IsInf(measured, 0) {
			return // a peer not measured in this run
		}
		for i := range rounds {
			rounds[i] = round(rounds[i], 2)
		}
		r.Targets = append(r.Targets, Target{What: what, Measured: round(measured, 2), Target: required, Met: met, Rounds: rounds})
	}
	rate := func(run Run) float64 { return run.RecordsPerSec }
	cpu := func(run Run) float64 { return run.CPUPerMillion }
	for _, workload := range []string{"100 B", "1 KB"} {
		best, bestPeer := 0.0, peer{}
		for _, interval := range []time.Duration{100 * time.Millisecond, time.Second} {
			eosPeer := peer{Name: peerProcessor, Guarantee: "exactly_once", Interval: interval}
			aloPeer := peer{Name: peerProcessor, Guarantee: "at_least_once", Interval: interval}
			ksPeer := peer{Name: peerStreams, Guarantee: "exactly_once", Interval: interval}
			eos, alo, ks := r.median(workload, eosPeer), r.median(workload, aloPeer), r.median(workload, ksPeer)
			if eos.RecordsPerSec > best {
				best, bestPeer = eos.RecordsPerSec, eosPeer
			}
			if ks.RecordsPerSec > 0 {
				v := eos.RecordsPerSec / ks.RecordsPerSec
				target(fmt.Sprintf("records/s, processor / Kafka Streams, %s, %s", workload, interval), v, ">= 2.0", v >= 2.0,
					r.perRound(workload, eosPeer, ksPeer, rate))
				v = eos.CPUPerMillion / ks.CPUPerMillion
				target(fmt.Sprintf("CPU s per M records, processor / Kafka Streams, %s, %s", workload, interval), v, "<= 0.33", v <= 1.0/3,
					r.perRound(workload, eosPeer, ksPeer, cpu))
			}
			v := eos.RecordsPerSec / alo.RecordsPerSec
			target(fmt.Sprintf("records/s, exactly_once / at_least_once, %s, %s", workload, interval), v, ">= 0.95", v >= 0.95,
				r.perRound(workload, eosPeer, aloPeer, rate))
		}
		serialPeer := peer{Name: peerSerial, Guarantee: "exactly_once", Interval: 100 * time.Millisecond}
		if serial := r.median(workload, serialPeer); serial.RecordsPerSec > 0 {
			eosPeer := peer{Name: peerProcessor, Guarantee: "exactly_once", Interval: 100 * time.Millisecond}
			v := r.median(workload, eosPeer).RecordsPerSec / serial.RecordsPerSec
			target(fmt.Sprintf("records/s, pipelined / serial loop, %s, 100ms", workload), v, ">= 1.0", v >= 1.0,
				r.perRound(workload, eosPeer, serialPeer, rate))
		}
		defPeer := peer{Name: peerDefaults, Guarantee: "exactly_once"}
		def := r.median(workload, defPeer)
		v := def.RecordsPerSec / best
		target(fmt.Sprintf("records/s, default settings / best tuned exactly_once, %s", workload), v, ">= 0.9", v >= 0.9,
			r.perRound(workload, defPeer, bestPeer, rate))
		if workload == "100 B" && def.RecordsPerSec > 0 {
			rss := figures(r.runs(workload, defPeer), func(run Run) float64 { return run.PeakRSSMB })
			target("peak RSS (MB), default settings, 100 B backlog", def.PeakRSSMB, "<= 100", def.PeakRSSMB <= 100, rss)
		}
	}
	p99 := func(l Latency) float64 { return l.P99Ms }
	for _, c := range []struct {
		load, what string
	}{{"", "half load"}, {loadHalfCapacity, "half capacity"}} {
		p := peer{Name: peerProcessor, Guarantee: "exactly_once", Interval: 100 * time.Millisecond, Load: c.load}
		if m := r.latencyMedian(p); m.Samples > 0 {
			target("p99 end-to-end latency (ms), processor exactly_once, 100ms batches, "+c.what, m.P99Ms, "<= 150", m.P99Ms <= 150,
				figures(r.latencyRuns(p), p99))
		}
	}
	// Backpressure must never make things worse: beside the backpressure-off run at the same interval and load.
	for _, pair := range [][2]peer{
		{{Name: peerBackpressure, Guarantee: "exactly_once", Interval: 100 * time.Millisecond}, {Name: peerProcessor, Guarantee: "exactly_once", Interval: 100 * time.Millisecond}},
		{{Name: peerDefaults, Guarantee: "exactly_once"}, {Name: peerProcessor, Guarantee: "exactly_once", Interval: defaultInterval}},
	} {
		on, off := r.latencyMedian(pair[0]), r.latencyMedian(pair[1])
		if on.Samples == 0 || off.Samples == 0 {
			continue
		}
		v := on.P99Ms / off.P99Ms
		target(fmt.Sprintf("p99 latency, %s / backpressure off, %s, half load", pair[0].Name, pair[1].intervalName()), v, "<= 1.2", v <= 1.2,
			r.latencyPerRound(pair[0], pair[1], p99))
		// Sustained counts until the last record arrived, so a difference in the last one's latency moves it
		// by up to a p99 over the 30 s run: 1% is that, not throughput.
		v = on.Sustained / off.Sustained
		target(fmt.Sprintf("records/s sustained, %s / backpressure off, %s, half load", pair[0].Name, pair[1].intervalName()), v, ">= 0.99", v >= 0.99,
			r.latencyPerRound(pair[0], pair[1], func(l Latency) float64 { return l.Sustained }))
	}
}

// loadName is how a latency run's load appears in the tables.
func (l Latency) loadName() string {
	if l.Load == "" {
		return "half drain rate"
	}
	return l.Load
}

// latencyRuns returns the latency runs of configuration p.
func (r *Results) latencyRuns(p peer) []Latency {
	var runs []Latency
	for _, l := range r.Latencies {
		if l.Peer == p.Name && l.Guarantee == p.Guarantee && l.BatchInterval == p.intervalName() && l.Load == p.Load {
			runs = append(runs, l)
		}
	}
	return runs
}

// perRound is f of num's run over f of den's run in each round (repeat) that has both, in the order of the rounds.
func (r *Results) perRound(workload string, num, den peer, f func(Run) float64) []float64 {
	return ratiosByRepeat(r.runs(workload, num), r.runs(workload, den), func(run Run) int { return run.Repeat }, f)
}

// latencyPerRound is perRound for the latency runs.
func (r *Results) latencyPerRound(num, den peer, f func(Latency) float64) []float64 {
	return ratiosByRepeat(r.latencyRuns(num), r.latencyRuns(den), func(l Latency) int { return l.Repeat }, f)
}

// ratiosByRepeat pairs nums and dens by repeat and returns f(num) / f(den) for each pair, by increasing repeat.
func ratiosByRepeat[T any](nums, dens []T, repeat func(T) int, f func(T) float64) []float64 {
	byRepeat := map[int]T{}
	for _, d := range dens {
		byRepeat[repeat(d)] = d
	}
	var out []float64
	for _, n := range nums {
		if d, ok := byRepeat[repeat(n)]; ok && f(d) != 0 {
			out = append(out, f(n)/f(d))
		}
	}
	return out
}

// latencyMedian is the median, figure by figure, of a configuration's latency runs; Samples is 0 if it has none.
func (r *Results) latencyMedian(p peer) Latency {
	runs := r.latencyRuns(p)
	if len(runs) == 0 {
		return Latency{}
	}
	med := func(f func(Latency) float64) float64 { return medianOf(runs, f) }
	m := runs[0]
	m.Repeat = len(runs)
	m.Samples = int(med(func(l Latency) float64 { return float64(l.Samples) }))
	m.Rate = med(func(l Latency) float64 { return l.Rate })
	m.Sustained = med(func(l Latency) float64 { return l.Sustained })
	m.P50Ms = med(func(l Latency) float64 { return l.P50Ms })
	m.P99Ms = med(func(l Latency) float64 { return l.P99Ms })
	m.P999Ms = med(func(l Latency) float64 { return l.P999Ms })
	m.MaxMs = med(func(l Latency) float64 { return l.MaxMs })
	m.CPUPerMillion = med(func(l Latency) float64 { return l.CPUPerMillion })
	m.PeakRSSMB = med(func(l Latency) float64 { return l.PeakRSSMB })
	return m
}

// latencyPeers lists the distinct configurations of the latency runs, in the order they first ran.
func (r *Results) latencyPeers() []peer {
	var out []peer
	seen := map[string]bool{}
	for _, l := range r.Latencies {
		key := l.Peer + "|" + l.Guarantee + "|" + l.BatchInterval + "|" + l.Load
		if seen[key] {
			continue
		}
		seen[key] = true
		p := peer{Name: l.Peer, Guarantee: l.Guarantee, Load: l.Load}
		if l.BatchInterval != "default" {
			p.Interval, _ = time.ParseDuration(l.BatchInterval)
		}
		out = append(out, p)
	}
	return out
}

// finite is v, or 0 when a ceiling was not measured (-quick) and v is not a number.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func yes(met bool) string {
	if met {
		return "met"
	}
	return "**missed**"
}

func (r *Results) writeMarkdown(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "Machine: %d CPUs (%s), %s GiB, Linux %s, load average at start %s; %s, librdkafka %s; Kafka image %s (single broker, 6 partitions). Run took %s.\n\n",
		m.CPUs, m.CPUModel, m.MemoryGiB, m.Kernel, m.LoadAverage, m.Go, m.Librdkafka, m.KafkaImage, r.Took)

	fmt.Fprintln(w, "Broker ceiling (MB = 2^20 bytes of values):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| records | tool | records/s | MB/s |")
	fmt.Fprintln(w, "|---|---|---:|---:|")
	for _, c := range r.Ceilings {
		fmt.Fprintf(w, "| %s | %s | %.0f | %.1f |\n", c.Workload, c.Tool, c.RecordsPerSec, c.MBPerSec)
	}

	fmt.Fprintln(w)
	fmt.Fprintf(w, "Draining the backlog (time from process start to every offset committed), medians of %d runs each", r.repeats())
	if len(r.Warmups) > 0 {
		fmt.Fprint(w, ", after warm-up drains left out (")
		for i, share := range r.warmupJITShares() {
			if i > 0 {
				fmt.Fprint(w, "; ")
			}
			if math.IsNaN(share) {
				fmt.Fprintf(w, "round %d: the broker's CPU not readable here", i+1)
			} else {
				fmt.Fprintf(w, "round %d: the broker's JIT compiler took %.0f%% of its CPU", i+1, 100*share)
			}
		}
		fmt.Fprint(w, ")")
	}
	fmt.Fprintln(w, ":")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| records | peer | guarantee | batch / commit interval | seconds | start-up s | records/s | MB/s | vs copy ceiling | CPU s / M records | peak RSS MB | broker CPU s / M records | broker JIT % |")
	fmt.Fprintln(w, "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, workload := range []string{"100 B", "1 KB"} {
		for _, p := range r.peers() {
			m := r.median(workload, p)
			if m.Repeat == 0 {
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %.1f | %.1f | %.0f | %.1f | %.2f | %.2f | %.0f | %s |\n",
				workload, p.Name, p.Guarantee, p.intervalName(), m.Seconds, m.StartupSeconds, m.RecordsPerSec, m.MBPerSec,
				m.VsCopyCeiling, m.CPUPerMillion, m.PeakRSSMB, m.brokerCells())
		}
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every run, in the order they ran:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| # | records | peer | guarantee | interval | seconds | records/s | CPU s / M records | peak RSS MB | broker CPU s / M records | broker JIT % |")
	fmt.Fprintln(w, "|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|")
	for _, run := range slices.Concat(r.Warmups, r.Runs) {
		n := strconv.Itoa(run.Repeat)
		if run.WarmupRound > 0 {
			n = fmt.Sprintf("warm-up %d", run.WarmupRound)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %.1f | %.0f | %.2f | %.0f | %s |\n", n, run.Workload, run.Peer,
			run.Guarantee, run.BatchInterval, run.Seconds, run.RecordsPerSec, run.CPUPerMillion, run.PeakRSSMB, run.brokerCells())
	}

	if c := r.Capacity; len(c.Steps) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Capacity with the latency runs' generator and reader on the machine (%s %s %s %s, %.0f s steps from 0.4 of its drain rate of %.0f records/s, kept up with while the median latency of the records sent in a step's last %.0f s is at most %.0f ms): %.0f records/s (%.2f of the drain rate).\n\n",
			c.Workload, c.Peer, c.Guarantee, c.BatchInterval, capacityStep.Seconds(), c.DrainRate, capacityTail.Seconds(), capacityLagMs,
			c.RecordsPerSec, c.RecordsPerSec/c.DrainRate)
		fmt.Fprintln(w, "| records/s | median latency ms, step's last seconds |")
		fmt.Fprintln(w, "|---:|---:|")
		for _, st := range c.Steps {
			fmt.Fprintf(w, "| %.0f | %.0f |\n", st[0], st[1])
		}
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "End-to-end latency (producer timestamp to visible to a read_committed reader), at half the drain rate or at half the capacity above, medians:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| records | peer | guarantee | interval | load | runs | records/s | sustained | p50 ms | p99 ms | p99.9 ms | max ms | CPU s / M records | peak RSS MB |")
	fmt.Fprintln(w, "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range r.latencyPeers() {
		l := r.latencyMedian(p)
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f | %.0f |\n",
			l.Workload, l.Peer, l.Guarantee, l.BatchInterval, l.loadName(), l.Repeat, l.Rate, l.Sustained, l.P50Ms, l.P99Ms, l.P999Ms, l.MaxMs,
			l.CPUPerMillion, l.PeakRSSMB)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every latency run, in the order they ran:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| # | peer | guarantee | interval | load | records/s | sustained | p50 ms | p99 ms | max ms |")
	fmt.Fprintln(w, "|---:|---|---|---|---|---:|---:|---:|---:|---:|")
	for _, l := range r.Latencies {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %.0f | %.0f | %.0f | %.0f | %.0f |\n",
			l.Repeat, l.Peer, l.Guarantee, l.BatchInterval, l.loadName(), l.Rate, l.Sustained, l.P50Ms, l.P99Ms, l.MaxMs)
	}

	if r.Profile.Top != "" {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "CPU profile of the processor (%s), top functions:\n\n```\n%s```\n", r.Profile.Run, r.Profile.Top)
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "Targets:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | measured (medians) | required | | each round |")
	fmt.Fprintln(w, "|---|---:|---|---|---|")
	for _, t := range r.Targets {
		rounds := make([]string, len(t.Rounds))
		for i, v := range t.Rounds {
			rounds[i] = strconv.FormatFloat(v, 'g', -1, 64)
		}
		fmt.Fprintf(w, "| %s | %g | %s | %s | %s |\n", t.What, t.Measured, t.Target, yes(t.Met), strings.Join(rounds, ", "))
	}
}

// repeats is the most runs any configuration had.
func (r *Results) repeats() int {
	n := 0
	for _, run := range r.Runs {
		n = max(n, run.Repeat)
	}
	return n
}

func (r *Results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// series is one line of a plot.
type series struct {
	name   string
	points [][2]float64
}

// writeSVG plots the processor's throughput over time while draining each backlog (records/s over 1 s windows
// of the committed offsets) above the p99 latency of every second of the latency runs.
func (r *Results) writeSVG(path string) error {
	var tput, lat []series
	for _, run := range r.Runs {
		if run.Repeat != 1 {
			continue // one line per configuration keeps the plot readable
		}
		tput = append(tput, series{name: fmt.Sprintf("%s %s %s %s", run.Workload, shortPeer(run.Peer), run.Guarantee, run.BatchInterval), points: rates(run.Progress)})
	}
	for _, l := range r.Latencies {
		if l.Repeat > 1 {
			continue
		}
		name := fmt.Sprintf("%s %s %s %s", l.Workload, shortPeer(l.Peer), l.Guarantee, l.BatchInterval)
		if l.Load != "" {
			name += " at " + l.Load
		}
		lat = append(lat, series{name: name, points: l.PerSecond})
	}
	var sb strings.Builder
	const width, panel = 1000, 360
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, 2*panel)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	plot(&sb, 0, "Processor throughput while draining the backlog (records/s, 1 s windows)", "seconds since the processor started", tput, width, panel)
	plot(&sb, panel, "End-to-end latency at half the drain rate or capacity: p99 of each second (ms)", "seconds since the generator started", lat, width, panel)
	sb.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

// shortPeer is a peer's name short enough for the plot's legend.
func shortPeer(name string) string {
	switch name {
	case peerStreams:
		return "KStreams"
	case peerDefaults:
		return "defaults"
	case peerBackpressure:
		return "proc bp-on"
	case peerSerial:
		return "proc serial"
	}
	return "proc"
}

// rates turns cumulative [t, records] samples into [t, records/s] over windows of at least a second.
func rates(progress [][2]float64) [][2]float64 {
	var out [][2]float64
	from := 0
	for i, p := range progress {
		if dt := p[0] - progress[from][0]; dt >= 1 {
			out = append(out, [2]float64{p[0], (p[1] - progress[from][1]) / dt})
			from = i
		}
	}
	return out
}

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
	"#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#843c39"}

// plot draws one panel at vertical offset top: axes with ticks, a polyline per series, a legend on the right.
func plot(sb *strings.Builder, top int, title, xlabel string, lines []series, width, height int) {
	const left, right, bottom, head = 70, 260, 45, 30
	pw, ph := float64(width-left-right), float64(height-head-bottom)
	var xmax, ymax float64
	for _, s := range lines {
		for _, p := range s.points {
			xmax, ymax = max(xmax, p[0]), max(ymax, p[1])
		}
	}
	xmax, ymax = niceCeil(xmax), niceCeil(ymax)
	x := func(v float64) float64 { return left + v/xmax*pw }
	y := func(v float64) float64 { return float64(top+head) + ph - v/ymax*ph }
	fmt.Fprintf(sb, `<text x="%d" y="%d" font-size="14" font-weight="bold">%s</text>`+"\n", left, top+20, html.EscapeString(title))
	fmt.Fprintf(sb, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", left, top+head, pw, ph)
	for i := 0; i <= 5; i++ {
		xv, yv := xmax*float64(i)/5, ymax*float64(i)/5
		fmt.Fprintf(sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", float64(left), y(yv), float64(left)+pw, y(yv))
		fmt.Fprintf(sb, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-5, y(yv)+4, short(yv))
		fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(xv), float64(top+head)+ph+16, short(xv))
	}
	fmt.Fprintf(sb, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", float64(left)+pw/2, top+height-8, html.EscapeString(xlabel))
	for i, s := range lines {
		color := palette[i%len(palette)]
		var pts []string
		for _, p := range s.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p[0]), y(p[1])))
		}
		fmt.Fprintf(sb, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		ly := top + head + 10 + 18*i
		fmt.Fprintf(sb, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", width-right+15, ly, width-right+35, ly, color)
		fmt.Fprintf(sb, `<text x="%d" y="%d">%s</text>`+"\n", width-right+40, ly+4, html.EscapeString(s.name))
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten, so the axis ticks are round numbers.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func short(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", round(v/1e6, 2))
	case v >= 1e3:
		return fmt.Sprintf("%gk", round(v/1e3, 2))
	default:
		return fmt.Sprintf("%g", round(v, 1))
	}
}
