package txn

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/eosproc/eosproc/produce"
	"github.com/eosproc/eosproc/stream"
)

// prepare turns a run of a batch's inputs into what its transaction writes: de-duplication, then the transform,
// with dead letters for the records either fails on, and counts them into the batch. A record the transform
// fails on is dead-lettered in the batch's own transaction, so it is committed exactly once like any output and
// never blocks the partition behind it. Duplicates produce nothing, but their offsets are committed with the
// batch like any other input's.
func (l *Loop) prepare(work context.Context, b *batch, in []stream.Record) (*chunk, error) {
	start := time.Now()
	defer func() { b.preparation += time.Since(start) }()
	kept, dead, changelog, err := l.dedupe(work, in)
	if err != nil {
		return nil, &abortable{step: "dedupe", err: err}
	}
	out, from, failed, err := l.transform(work, kept)
	if err != nil {
		return nil, &abortable{step: "transform", err: err}
	}
	c := &chunk{inputs: len(in), kept: kept, from: from, outputs: len(out), changelog: changelog}
	c.out = append(append(out, dead...), failed...)
	if len(c.out) > c.outputs && l.StopOnBadRecord {
		return nil, badRecord(c.out[c.outputs])
	}
	b.outputs += c.outputs
	b.produced += len(c.out)
	for stage, n := range deadLettersByStage(c.out[c.outputs:]) {
		if b.deadByStage == nil {
			b.deadByStage = map[string]int{}
		}
		b.deadByStage[stage] += n
	}
	return c, nil
}

// dedupe drops the duplicates in a batch and dead-letters records without an identity; without a Deduplicator
// every record is kept.
func (l *Loop) dedupe(work context.Context, in []stream.Record) (kept, dead, changelog []stream.Record, err error) {
	if l.Dedupe == nil {
		return in, nil, nil, nil
	}
	kept, rejected, changelog, err := l.Dedupe.Filter(work, in)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, r := range rejected {
		dead = append(dead, l.deadLetter(r.Record, failure{StageDedupe, ClassNoIdentity, r.Err}))
	}
	return kept, dead, changelog, nil
}

// transform applies the transform to every record; from[i] is the index in `in` of the record out[i] came from.
// Failures (errors, panics, an output larger than the producer takes) become dead-letter records, as does,
// untransformed, a record whose output the producer refused in an earlier attempt of this batch. An error is
// returned only when the work context ended: a transform failing because we are out of time says nothing about
// the record.
func (l *Loop) transform(work context.Context, in []stream.Record) (out []stream.Record, from []int, dead []stream.Record, err error) {
	// Most transforms emit one record per input: sized once instead of regrown (and recopied) ~log2(n) times.
	out = make([]stream.Record, 0, len(in))
	from = make([]int, 0, len(in))
	var one [1]stream.Record // the default transform's output, copied into out at once
	for i, r := range in {
		if len(l.refused) > 0 {
			if reason, ok := l.refused[positionOf(r)]; ok {
				// Kept until the batch commits: if this attempt fails too, the next one needs it again.
				dead = append(dead, l.deadLetter(r, failure{StageProduce, ClassRefused, fmt.Errorf("an output of this record was refused: %w", reason)}))
				continue
			}
		}
		var res []stream.Record
		var terr error
		if l.identity != nil {
			one[0] = l.identity.Output(r)
			res = one[:]
		} else {
			res, terr = l.apply(work, r)
		}
		if terr != nil {
			if work.Err() != nil {
				return nil, nil, nil, fmt.Errorf("transform %s: %w", r.Source(), context.Cause(work))
			}
			dead = append(dead, l.deadLetter(r, transformFailure(terr)))
			continue
		}
		if serr := l.checkSizes(res); serr != nil {
			dead = append(dead, l.deadLetter(r, failure{StageSize, ClassTooLarge, serr}))
			continue
		}
		for _, o := range res {
			if o.Topic == "" {
				o.Topic = l.OutputTopic
			}
			out = append(out, o)
			from = append(from, i)
		}
	}
	return out, from, dead, nil
}

// checkSizes refuses outputs the producer would refuse, so their input is dead-lettered with none of its outputs
// instead of failing the transaction half-way.
func (l *Loop) checkSizes(out []stream.Record) error {
	if l.fitsAll <= 0 && len(l.TopicMaxBytes) == 0 {
		return nil
	}
	for _, o := range out {
		n := produce.EncodedSize(o)
		if n <= l.fitsAll {
			continue // within every limit: no topic to look up
		}
		if l.MaxRecordBytes > 0 && n > l.MaxRecordBytes {
			return fmt.Errorf("output too large: %d bytes with headers, above the producer's message.max.bytes (%d)", n, l.MaxRecordBytes)
		}
		topic := cmp.Or(o.Topic, l.OutputTopic)
		if limit, ok := l.TopicMaxBytes[topic]; ok && n+produce.RecordBatchOverhead > limit {
			return fmt.Errorf("output too large for topic %q: %d bytes with headers, %d in a record batch, above the topic's max.message.bytes (%d)",
				topic, n, n+produce.RecordBatchOverhead, limit)
		}
	}
	return nil
}

func (l *Loop) apply(ctx context.Context, r stream.Record) (out []stream.Record, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &stream.RecordError{Stage: StageTransform, Class: ClassPanic, Err: fmt.Errorf("transform panicked: %v", p)}
		}
	}()
	return l.Transform(ctx, r)
}

// refusedInputs maps the records the producer refused for themselves (indexes into c.out) to their inputs: whatever
// we do, it refuses them again, so the redo dead-letters these inputs with none of their outputs (those already
// produced went with the aborted transaction). A refused dead letter is fatal: nothing is left to fall back on.
func refusedInputs(c *chunk, refused []int, err error) ([]position, error) {
	inputs := make([]position, 0, len(refused))
	for _, i := range refused {
		if i >= c.outputs {
			return nil, fmt.Errorf("dead letter refused by the producer (raise the producer's message.max.bytes "+
				"and the dead-letter topic's max.message.bytes): %w", err)
		}
		inputs = append(inputs, positionOf(c.kept[c.from[i]]))
	}
	return inputs, nil
}

// rememberRefused notes the inputs whose outputs the producer refused in a failed transaction, for the redo.
func (l *Loop) rememberRefused(ab *abortable) {
	for _, pos := range ab.refusedInputs {
		l.refused[pos] = ab.err
		l.Logger.Warn("output refused by the producer; its input goes to the dead-letter topic when the batch is redone",
			"source", fmt.Sprintf("%s/%d", pos.TopicPartition, pos.offset), "error", ab.err)
	}
}

// position is where an input record is: its partition and offset.
type position struct {
	stream.TopicPartition
	offset int64
}

func positionOf(r stream.Record) position { return position{r.TopicPartition(), r.Offset} }

// forgetRefused drops what was remembered of partitions this member no longer owns: their next owner redoes
// their batches, and the map must not grow with every partition that ever moved away.
func (l *Loop) forgetRefused(revoked []stream.TopicPartition) {
	for _, tp := range revoked {
		for pos := range l.refused {
			if pos.TopicPartition == tp {
				delete(l.refused, pos)
			}
		}
	}
}

// summarize returns what the group commits for a batch, and its records per partition (for the rate
// controller). The offsets are, per partition in the batch, the offset after its last record (Kafka's committed
// offset names the next record to read), and nothing for partitions without records, whose committed offsets
// must stay as they are.
func summarize(in []stream.Record) (offsets, perPartition map[stream.TopicPartition]int64) {
	offsets, perPartition = map[stream.TopicPartition]int64{}, map[stream.TopicPartition]int64{}
	// Consecutive records are mostly of one partition: the maps are updated once per run of them.
	var (
		tp         stream.TopicPartition
		count, end int64
	)
	endRun := func() {
		if count > 0 {
			perPartition[tp] += count
			offsets[tp] = max(offsets[tp], end)
		}
	}
	for i := range in {
		r := &in[i]
		if i == 0 || r.Topic != tp.Topic || r.Partition != tp.Partition {
			endRun()
			tp, count, end = r.TopicPartition(), 0, 0
		}
		count++
		end = max(end, r.Offset+1)
	}
	endRun()
	return offsets, perPartition
}

// inputRanges describes which offsets of which partitions a batch held, e.g. "in/0:[10,20) in/1:[5,9)", so a
// debug log can be matched against the output's source headers.
func inputRanges(in []stream.Record) string {
	type span struct{ first, next int64 }
	spans := map[stream.TopicPartition]span{}
	for _, r := range in {
		tp := r.TopicPartition()
		s, ok := spans[tp]
		if !ok || r.Offset < s.first {
			s.first = r.Offset
		}
		s.next = max(s.next, r.Offset+1)
		spans[tp] = s
	}
	parts := make([]string, 0, len(spans))
	for tp, s := range spans {
		parts = append(parts, fmt.Sprintf("%s:[%d,%d)", tp, s.first, s.next))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
