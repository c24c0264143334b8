// Package verify gives the exactly-once verdict that end-to-end tests, the demo and the fault suite rest on: a
// read_committed reader of the inputs and of the outputs (dead letters included) that matches every output to the
// input it came from, through the source header the processor writes, and counts what is missing, duplicated,
// unexpected or out of order.
package verify

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/kafkatest"
	"github.com/eosproc/eosproc/stream"
)

// Report is the verdict. Exactly once means OK: every input appears once among the outputs and nothing else does,
// and within each output partition the records of each input partition keep their input order.
type Report struct {
	Inputs       int // input records visible to read_committed readers
	Outputs      int // output records, dead letters included
	DeadLettered int // of Outputs, those in the dead-letter topic
	Missing      int // inputs with no output
	Duplicates   int // outputs beyond the first for one input
	Unexpected   int // outputs that name no input (or no source at all)
	OutOfOrder   int // outputs whose input offset is not above the previous one from the same input partition
	ValueChanged int // outputs whose value differs from their input's (checked only when Options.SameValues)
	Filtered     int // of Inputs, those Options.Filtered says the transform drops: they must have no output
	NotFiltered  int // outputs of inputs that should have been filtered out
	Examples     []string
}

// OK reports whether the outputs hold every input exactly once, in order.
func (r Report) OK() bool {
	return r.Missing == 0 && r.Duplicates == 0 && r.Unexpected == 0 && r.OutOfOrder == 0 && r.ValueChanged == 0 &&
		r.NotFiltered == 0 && r.Outputs == r.Inputs-r.Filtered
}

func (r Report) String() string {
	verdict := "EXACTLY ONCE"
	if !r.OK() {
		verdict = "VIOLATED"
	}
	s := fmt.Sprintf("%s: inputs %d, outputs %d (dead-lettered %d), missing %d, duplicates %d, unexpected %d, out of order %d",
		verdict, r.Inputs, r.Outputs, r.DeadLettered, r.Missing, r.Duplicates, r.Unexpected, r.OutOfOrder)
	if r.Filtered > 0 || r.NotFiltered > 0 {
		s += fmt.Sprintf(", filtered %d (yet output %d)", r.Filtered, r.NotFiltered)
	}
	if r.ValueChanged > 0 {
		s += fmt.Sprintf(", values changed %d", r.ValueChanged)
	}
	if len(r.Examples) > 0 {
		s += "\n  e.g. " + strings.Join(r.Examples, "\n  e.g. ")
	}
	return s
}

// Options name the topics to compare.
type Options struct {
	Bootstrap       string
	Inputs          []string
	Outputs         []string
	DeadLetterTopic string // optional; its records count as outputs
	SameValues      bool   // outputs must carry their input's value (identity transform)
	// Filtered, when set, says which inputs the transform drops: those must have no output at all, and every
	// other input exactly one. It is the test's own copy of the filter, so the verdict does not trust the
	// processor's.
	Filtered func(input *kafka.Message) bool
	// Settle, when above 0, is how long to wait first for transactions still open on the outputs to end: a
	// processor that stopped inside a transaction (a wedged zombie) leaves it open until the broker aborts it at
	// the transaction timeout, and until then read_committed readers see nothing written after its first record,
	// including other processors' committed outputs. Past Settle the verdict is taken on what is visible.
	Settle time.Duration
}

const maxExamples = 5

// Run reads every topic to its end with read_committed and compares.
func Run(ctx context.Context, opts Options) (Report, error) {
	if opts.Settle > 0 {
		settle, cancel := context.WithTimeout(ctx, opts.Settle)
		err := kafkatest.WaitSettled(settle, opts.Bootstrap, append(slices.Clone(opts.Outputs), opts.DeadLetterTopic))
		cancel()
		if err != nil && ctx.Err() != nil {
			return Report{}, err
		}
	}
	inputs := map[string]*kafka.Message{} // by source "topic/partition/offset"
	for _, topic := range opts.Inputs {
		parts, err := kafkatest.ReadCommitted(ctx, opts.Bootstrap, topic)
		if err != nil {
			return Report{}, fmt.Errorf("verify: read input: %w", err)
		}
		for _, msgs := range parts {
			for _, m := range msgs {
				inputs[fmt.Sprintf("%s/%d/%d", topic, m.TopicPartition.Partition, m.TopicPartition.Offset)] = m
			}
		}
	}
	r := Report{Inputs: len(inputs)}
	filtered := map[string]bool{}
	if opts.Filtered != nil {
		for src, m := range inputs {
			if opts.Filtered(m) {
				filtered[src] = true
			}
		}
		r.Filtered = len(filtered)
	}
	seen := make(map[string]int, len(inputs))
	outputs := slices.Clone(opts.Outputs)
	if opts.DeadLetterTopic != "" {
		outputs = append(outputs, opts.DeadLetterTopic)
	}
	for _, topic := range outputs {
		parts, err := kafkatest.ReadCommitted(ctx, opts.Bootstrap, topic)
		if err != nil {
			return Report{}, fmt.Errorf("verify: read output: %w", err)
		}
		for _, p := range slices.Sorted(maps.Keys(parts)) {
			last := map[string]int64{} // input partition -> last input offset seen in this output partition
			for _, m := range parts[p] {
				r.Outputs++
				if topic == opts.DeadLetterTopic {
					r.DeadLettered++
				}
				src := sourceOf(m)
				in, known := inputs[src]
				if !known {
					r.Unexpected++
					r.example(fmt.Sprintf("%s[%d]@%d names source %q, which is no input record", topic, p, m.TopicPartition.Offset, src))
					continue
				}
				seen[src]++
				if filtered[src] {
					r.NotFiltered++
					r.example(fmt.Sprintf("input %s should have been filtered out, yet is at %s[%d]@%d", src, topic, p, m.TopicPartition.Offset))
				} else if seen[src] > 1 {
					r.Duplicates++
					r.example(fmt.Sprintf("input %s appears %d times (again at %s[%d]@%d)", src, seen[src], topic, p, m.TopicPartition.Offset))
				}
				inPartition, offset := splitSource(src)
				if prev, ok := last[inPartition]; ok && offset <= prev {
					r.OutOfOrder++
					r.example(fmt.Sprintf("%s[%d]: input %s after offset %d of the same input partition", topic, p, src, prev))
				}
				last[inPartition] = offset
				if opts.SameValues && topic != opts.DeadLetterTopic && string(m.Value) != string(in.Value) {
					r.ValueChanged++
					r.example(fmt.Sprintf("input %s: value %q became %q", src, in.Value, m.Value))
				}
			}
		}
	}
	for src := range inputs {
		if seen[src] == 0 && !filtered[src] {
			r.Missing++
			r.example("input " + src + " has no output")
		}
	}
	return r, nil
}

func (r *Report) example(s string) {
	if len(r.Examples) < maxExamples {
		r.Examples = append(r.Examples, s)
	}
}

func sourceOf(m *kafka.Message) string {
	for _, h := range m.Headers {
		if h.Key == stream.SourceHeader {
			return string(h.Value)
		}
	}
	return ""
}

// splitSource splits "topic/partition/offset" into "topic/partition" and the offset.
func splitSource(src string) (string, int64) {
	i := strings.LastIndexByte(src, '/')
	offset, _ := strconv.ParseInt(src[i+1:], 10, 64)
	return src[:i], offset
}
