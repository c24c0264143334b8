package dedupe

import (
	"context"
	"fmt"
	"time"

	"github.com/eosproc/eosproc/stream"
)

// Restorer reads one changelog partition from its beginning to its end with read_committed, handing each
// record to apply; it returns how many it read.
type Restorer interface {
	Restore(ctx context.Context, topic string, partition int32, apply func(key, value []byte) error) (int, error)
}

// Stage is the de-duplication step of the loop: it holds one Store per assigned input partition, restores a
// partition's store from its changelog (in the background, see Ready) before the partition's first record is
// judged, drops duplicates, and returns the changelog records the batch's transaction must carry. The loop calls
// Committed or Aborted after every batch it filtered, and Forget for partitions it lost, whose next owner restores
// them.
//
// The changelog of input topic T is the compacted topic ChangelogTopic(T); its partition p holds the store of T's
// partition p. Writing it in the batch's transaction is what makes the store exactly once: a crash or an abort
// rolls back the outputs, the offsets and the store together.
type Stage struct {
	Identity       IdentitySpec
	Store          Config
	ChangelogTopic func(inputTopic string) string
	Restorer       Restorer
	// Observer, when set, is told about restores and dropped duplicates (metrics).
	Observer Observer

	stores  map[stream.TopicPartition]*Store
	touched map[stream.TopicPartition]*Store
	// emitted counts, per touched store, the changes Filter already returned as changelog records: a batch may be
	// filtered in several runs (as its records arrive), each of which must write only its own changes.
	emitted   map[stream.TopicPartition]int
	restoring map[stream.TopicPartition]*restore
	slots     chan struct{} // one per restore reading at a time
}

// restore is one partition's store being read from its changelog on a goroutine of its own. Its result is
// written before done is closed, and read by the loop's goroutine only after.
type restore struct {
	cancel  context.CancelFunc
	done    chan struct{}
	store   *Store
	records int
	took    time.Duration
	err     error
}

// concurrentRestores bounds the restores reading at once: each has a client of its own (connections, buffers,
// librdkafka's threads), and a rebalance can hand over dozens of partitions.
const concurrentRestores = 4

// restoreProgressEvery is how many changelog records a restore reads between progress reports.
const restoreProgressEvery = 1000

// Observer receives what a Stage does, for metrics.
type Observer interface {
	// RestoreProgress is called while a partition's state is read, with the records read since the last call
	// (every restoreProgressEvery records and at the end): a long restore is work, not a stuck loop.
	RestoreProgress(tp stream.TopicPartition, records int)
	Restored(tp stream.TopicPartition, records int, took time.Duration)
	Dropped(tp stream.TopicPartition, duplicates int)
	Entries(tp stream.TopicPartition, entries int)
	Forgotten(tp stream.TopicPartition)
}

// Rejected is an input record without a usable identity; the loop dead-letters it with Err.
type Rejected struct {
	Record stream.Record
	Err    error
}

// Filter returns the records of in that are not duplicates, the records without an identity, and the changelog
// records (Topic and Partition set) of the changes it made, which must be committed with the batch. A batch may
// be filtered in several calls before Committed or Aborted: each returns only its own changes. An error (a
// restore failed) leaves no trace in the stores; the loop aborts the batch.
func (s *Stage) Filter(ctx context.Context, in []stream.Record) (kept []stream.Record, rejected []Rejected, changelog []stream.Record, err error) {
	s.init()
	dropped := map[stream.TopicPartition]int{}
	kept = in[:0:0]
	for _, r := range in {
		tp := r.TopicPartition()
		store, err := s.store(ctx, tp)
		if err != nil {
			s.Aborted()
			return nil, nil, nil, err
		}
		id, err := s.Identity.Extract(r)
		if err != nil {
			rejected = append(rejected, Rejected{Record: r, Err: fmt.Errorf("de-duplication identity (%s): %w", s.Identity, err)})
			continue
		}
		s.touched[tp] = store
		if store.Seen(id, r.Timestamp) {
			dropped[tp]++
			continue
		}
		kept = append(kept, r)
	}
	for tp, store := range s.touched {
		topic := s.ChangelogTopic(tp.Topic)
		changes := store.Changes()
		for _, m := range changes[s.emitted[tp]:] {
			changelog = append(changelog, stream.Record{Topic: topic, Partition: tp.Partition, Key: m.Key(), Value: m.Value()})
		}
		s.emitted[tp] = len(changes)
	}
	if s.Observer != nil {
		for tp, n := range dropped {
			s.Observer.Dropped(tp, n)
		}
	}
	return kept, rejected, changelog, nil
}

func (s *Stage) init() {
	if s.stores == nil {
		s.stores = map[stream.TopicPartition]*Store{}
		s.touched = map[stream.TopicPartition]*Store{}
		s.emitted = map[stream.TopicPartition]int{}
		s.restoring = map[stream.TopicPartition]*restore{}
		s.slots = make(chan struct{}, concurrentRestores)
	}
}

// Ready reports whether tp's store is restored, so that its records can be judged without waiting. If it is not,
// Ready starts restoring it in the background (the first time) and reports false: the loop holds the partition's
// records back meanwhile and asks again with its next batch, while the other partitions go on. Kafka Streams
// restores the same way. A restore that failed returns its error once and begins again at the next call. ctx
// bounds the restore; Forget cancels it.
func (s *Stage) Ready(ctx context.Context, tp stream.TopicPartition) (bool, error) {
	s.init()
	if _, ok := s.stores[tp]; ok {
		return true, nil
	}
	r, ok := s.restoring[tp]
	if !ok {
		s.restoring[tp] = s.startRestore(ctx, tp)
		return false, nil
	}
	select {
	case <-r.done:
	default:
		return false, nil
	}
	delete(s.restoring, tp)
	if err := s.adopt(tp, r); err != nil {
		return false, err
	}
	return true, nil
}

// store returns tp's store. One the loop did not wait for with Ready is restored here, holding the batch.
func (s *Stage) store(ctx context.Context, tp stream.TopicPartition) (*Store, error) {
	if st, ok := s.stores[tp]; ok {
		return st, nil
	}
	r, ok := s.restoring[tp]
	if !ok {
		r = s.startRestore(ctx, tp)
		s.restoring[tp] = r
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	delete(s.restoring, tp)
	if err := s.adopt(tp, r); err != nil {
		return nil, err
	}
	return s.stores[tp], nil
}

// startRestore reads tp's changelog into a new store on a goroutine of its own, once a slot is free.
func (s *Stage) startRestore(ctx context.Context, tp stream.TopicPartition) *restore {
	ctx, cancel := context.WithCancel(ctx)
	r := &restore{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer cancel()
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		case <-ctx.Done():
			r.err = ctx.Err()
			return
		}
		start := time.Now()
		r.store, r.records, r.err = s.restore(ctx, tp)
		r.took = time.Since(start)
	}()
	return r
}

// restore reads tp's changelog into a new store. It runs on a restore's goroutine: it reads only the Stage's
// configuration, and the Observer is safe for concurrent use.
func (s *Stage) restore(ctx context.Context, tp stream.TopicPartition) (*Store, int, error) {
	st, err := NewStore(s.Store)
	if err != nil {
		return nil, 0, err
	}
	topic := s.ChangelogTopic(tp.Topic)
	apply, unreported := st.RestoreRecord, 0
	if s.Observer != nil {
		apply = func(key, value []byte) error {
			if unreported++; unreported == restoreProgressEvery {
				s.Observer.RestoreProgress(tp, unreported)
				unreported = 0
			}
			return st.RestoreRecord(key, value)
		}
	}
	n, err := s.Restorer.Restore(ctx, topic, tp.Partition, apply)
	if s.Observer != nil && unreported > 0 {
		s.Observer.RestoreProgress(tp, unreported)
	}
	if err != nil {
		return nil, n, fmt.Errorf("restore de-duplication state of %s from %s[%d]: %w", tp, topic, tp.Partition, err)
	}
	return st, n, nil
}

// adopt makes a finished restore's store tp's, or returns its error.
func (s *Stage) adopt(tp stream.TopicPartition, r *restore) error {
	if r.err != nil {
		return r.err
	}
	s.stores[tp] = r.store
	if s.Observer != nil {
		s.Observer.Restored(tp, r.records, r.took)
		s.Observer.Entries(tp, r.store.Len())
	}
	return nil
}

// Committed makes the batch's changes part of the stores' committed state.
func (s *Stage) Committed() {
	for tp, st := range s.touched {
		st.Commit()
		if s.Observer != nil {
			s.Observer.Entries(tp, st.Len())
		}
		delete(s.touched, tp)
	}
	clear(s.emitted)
}

// Aborted returns the stores to their committed state: the batch will be read again.
func (s *Stage) Aborted() {
	for tp, st := range s.touched {
		st.Rollback()
		delete(s.touched, tp)
	}
	clear(s.emitted)
}

// Forget drops the stores of partitions this instance no longer owns; if one comes back, it is restored again
// from the changelog, which its owner in between may have extended.
func (s *Stage) Forget(partitions []stream.TopicPartition) {
	for _, tp := range partitions {
		if r, ok := s.restoring[tp]; ok {
			r.cancel()
			delete(s.restoring, tp)
		}
		if st, ok := s.touched[tp]; ok {
			st.Rollback()
			delete(s.touched, tp)
			delete(s.emitted, tp)
		}
		if _, ok := s.stores[tp]; ok {
			delete(s.stores, tp)
			if s.Observer != nil {
				s.Observer.Forgotten(tp)
			}
		}
	}
}
