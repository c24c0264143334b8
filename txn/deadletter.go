package txn

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/eosproc/eosproc/stream"
)

// Dead-letter headers: why the record failed, where it came from, and who dead-lettered it when. Kafka
// Connect's dead-letter headers carry the same facts under its own prefix.
const (
	HeaderError           = "eosproc.error"       // the error's message
	HeaderErrorStage      = "eosproc.error.stage" // the part of the processing that failed: the Stage constants, or a transform's own
	HeaderErrorClass      = "eosproc.error.class" // the kind of failure: the Class constants, or a transform's own
	HeaderErrorTime       = "eosproc.error.time"  // when the record was dead-lettered, in ErrorTimeLayout, UTC
	HeaderAppID           = "eosproc.app.id"      // the processor's application id
	HeaderInstanceID      = "eosproc.instance.id" // the instance that dead-lettered the record
	HeaderSourceTopic     = "eosproc.source.topic"
	HeaderSourcePartition = "eosproc.source.partition"
	HeaderSourceOffset    = "eosproc.source.offset"
)

// ErrorTimeLayout is HeaderErrorTime's format: RFC 3339 with milliseconds, fixed width, so that the times of
// dead letters compare as strings (a re-drive filters on them).
const ErrorTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Stages the loop names for the failures it finds itself; a transform's failures are StageTransform unless it
// returns a stream.RecordError naming its own (the configured pipeline names filter, map, key, headers, route
// and decode).
const (
	StageTransform = "transform" // the transform returned an error or panicked
	StageDedupe    = "dedupe"    // no de-duplication identity could be taken from the record
	StageSize      = "size"      // an output is larger than the producer or its topic takes
	StageProduce   = "produce"   // the producer refused an output of the record in an earlier attempt of its batch
)

// Classes of the failures the loop names itself.
const (
	ClassError      = "error"       // a transform's error that names no class
	ClassPanic      = "panic"       // the transform panicked
	ClassNoIdentity = "no_identity" // see StageDedupe
	ClassTooLarge   = "too_large"   // see StageSize
	ClassRefused    = "refused"     // see StageProduce
)

// loopStages are the stages whose dead-letter counter exists from the start, so that a dashboard's rate has a
// series before the first dead letter.
var loopStages = []string{StageTransform, StageDedupe, StageSize, StageProduce}

// failure is why a record goes to the dead-letter topic.
type failure struct {
	stage, class string
	err          error
}

// transformFailure is the failure of a transform's error: the stage and class it names, if any.
func transformFailure(err error) failure {
	var re *stream.RecordError
	if errors.As(err, &re) {
		return failure{cmp.Or(re.Stage, StageTransform), cmp.Or(re.Class, ClassError), err}
	}
	return failure{StageTransform, ClassError, err}
}

// deadLetter keeps the record's key, value, headers and timestamp and adds the failure, the source position and
// who dead-lettered it; it also carries stream.SourceHeader, so a reader counting outputs by source sees dead
// letters too.
func (l *Loop) deadLetter(r stream.Record, f failure) stream.Record {
	headers := make([]stream.Header, 0, len(r.Headers)+10)
	headers = append(headers, r.Headers...)
	headers = append(headers,
		stream.Header{Key: HeaderError, Value: []byte(f.err.Error())},
		stream.Header{Key: HeaderErrorStage, Value: []byte(f.stage)},
		stream.Header{Key: HeaderErrorClass, Value: []byte(f.class)},
		stream.Header{Key: HeaderErrorTime, Value: time.Now().UTC().AppendFormat(nil, ErrorTimeLayout)},
		stream.Header{Key: HeaderAppID, Value: []byte(l.AppID)},
		stream.Header{Key: HeaderInstanceID, Value: []byte(l.InstanceID)},
		stream.Header{Key: HeaderSourceTopic, Value: []byte(r.Topic)},
		stream.Header{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		stream.Header{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		stream.Header{Key: stream.SourceHeader, Value: []byte(r.Source())},
	)
	if !l.StopOnBadRecord { // otherwise the loop stops on it, with an error that says more
		l.deadLetterLog.note(l.Logger, f, r)
	}
	return stream.Record{Topic: l.DeadLetterTopic, Key: r.Key, Value: r.Value, Headers: headers, Timestamp: r.Timestamp}
}

// deadLettersByStage counts a batch's dead letters by their stage header.
func deadLettersByStage(dead []stream.Record) map[string]int {
	if len(dead) == 0 {
		return nil
	}
	counts := map[string]int{}
	for _, d := range dead {
		counts[headerValue(d, HeaderErrorStage)]++
	}
	return counts
}

// badRecord is the error that stops the processor when errors are not tolerated (Loop.StopOnBadRecord): the
// first record of the batch that would have been dead-lettered.
func badRecord(dead stream.Record) error {
	return &notTolerated{fmt.Sprintf("record %s failed at stage %s (%s): %s; PROCESSOR_ERRORS_TOLERANCE is none, so the processor "+
		"stops without committing its batch: fix the transform or the record and restart, or set "+
		"PROCESSOR_ERRORS_TOLERANCE=all to send such records to the dead-letter topic",
		headerValue(dead, stream.SourceHeader), headerValue(dead, HeaderErrorStage), headerValue(dead, HeaderErrorClass),
		headerValue(dead, HeaderError))}
}

// notTolerated is a record that would be dead-lettered when PROCESSOR_ERRORS_TOLERANCE is none.
type notTolerated struct{ msg string }

func (e *notTolerated) Error() string { return e.msg }

// deadLetterLog logs dead letters at most once a second per stage, each line with the number of records
// dead-lettered at that stage since the previous one and the latest record's error: a transform failing on
// every record must not write a log line per record.
type deadLetterLog struct {
	stages map[string]*stageLog
}

type stageLog struct {
	last    time.Time
	pending int // dead letters since the last line, this one included once noted
}

const deadLetterLogEvery = time.Second

func (d *deadLetterLog) note(log *slog.Logger, f failure, r stream.Record) {
	if d.stages == nil {
		d.stages = map[string]*stageLog{}
	}
	s := d.stages[f.stage]
	if s == nil {
		s = &stageLog{}
		d.stages[f.stage] = s
	}
	s.pending++
	now := time.Now()
	if now.Sub(s.last) < deadLetterLogEvery {
		return
	}
	log.Warn("records go to the dead-letter topic with their batch", "stage", f.stage, "records", s.pending,
		"class", f.class, "source", r.Source(), "error", f.err)
	s.last, s.pending = now, 0
}
