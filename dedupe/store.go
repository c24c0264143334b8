package dedupe

import (
	"fmt"
	"math"
	"time"
)

// Defaults for a zero Config.
const (
	// DefaultWindow covers a producer's retries (delivery.timeout.ms is 2 minutes by default) and an
	// application's re-send after a restart, with a wide margin.
	DefaultWindow = time.Hour
	// DefaultMaxEntries keeps a store of identities of about 30 bytes near 10 MB (see BenchmarkStoreMemory).
	DefaultMaxEntries = 100_000
)

// Config bounds a Store. Zero values mean the defaults.
type Config struct {
	// Window is how far apart in event time two records with one identity may be for the later to be a
	// duplicate (Kafka Streams' deduplication interval). It has Kafka's millisecond resolution.
	Window time.Duration
	// MaxEntries caps the identities a store holds; beyond it the oldest inserted is evicted first, even
	// within the window, so a burst of unique identities cannot exhaust memory.
	MaxEntries int
}

func (c Config) withDefaults() (Config, error) {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.Window < time.Millisecond {
		return c, fmt.Errorf("dedupe window %v: want at least 1ms (Kafka timestamps are milliseconds), or 0 for %v", c.Window, DefaultWindow)
	}
	if c.MaxEntries < 0 {
		return c, fmt.Errorf("dedupe max entries %d: want a positive number, or 0 for %d", c.MaxEntries, DefaultMaxEntries)
	}
	return c, nil
}

// Store is the de-duplication state of one input partition: the identities seen within the window, each with
// the event time at which it was inserted. See the package documentation for the batch protocol. A Store is not
// safe for concurrent use; the loop owns one per assigned partition.
//
// Layout: a map from identity to the position of its slot in a ring of slots (identity, timestamp) kept in
// insertion order. The ring head is the oldest insertion, so eviction by age and by count pops it in O(1), and a
// batch's changes are undone by moving the ring's two ends back. A slot whose identity was re-inserted or
// restored as a tombstone is stale: no map entry points at it, and it is skipped when it reaches the head.
type Store struct {
	window int64 // milliseconds
	max    int

	pos  map[string]uint64 // identity -> absolute ring position of its live slot
	ring []slot            // length a power of two; position p is at ring[p&mask]
	mask uint64
	head uint64 // oldest slot still in the ring
	tail uint64 // next position to fill
	// maxTs is the partition's stream time, the largest event time seen (math.MinInt64 before any record).
	maxTs int64
	stale int // slots in [head, tail) that no map entry points at

	// Since the last Commit: what to write to the changelog, how to undo it, and the committed ends of the ring.
	changes []Mutation
	undo    []undoStep
	c       committed
}

type slot struct {
	id string
	ts int64
}

type undoStep struct {
	id      string
	prev    uint64 // position before the change, if existed
	existed bool
}

type committed struct {
	head, tail uint64
	maxTs      int64
	stale      int
}

const minRing = 16

// NewStore returns an empty store bounded by cfg.
func NewStore(cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{
		window: cfg.Window.Milliseconds(),
		max:    cfg.MaxEntries,
		pos:    make(map[string]uint64),
		ring:   make([]slot, minRing),
		mask:   minRing - 1,
		maxTs:  math.MinInt64,
	}
	s.c = s.state()
	return s, nil
}

// Len returns the number of identities held, pending changes included.
func (s *Store) Len() int { return len(s.pos) }

// Seen records that a record with identity id and event time ts was read, and reports whether it is a
// duplicate to drop: whether id was inserted at an event time last with ts - last <= window (so a record
// older than the one first seen is a duplicate too) and not evicted since.
//
// A record that is not a duplicate is inserted with its own event time (an upsert in Changes), unless it is
// older than the stream time minus the window: such a late record is let through without being stored, since
// whether it repeats an evicted one cannot be known, and dropping a unique record is the worse mistake.
//
// A duplicate changes nothing: it does not extend the window. The window is anchored at the first occurrence,
// so a producer stuck re-sending a record cannot keep its identity alive forever and suppress a legitimate
// re-use after the window; duplicates cost no changelog write; and the ring stays in insertion order.
//
// Before the lookup, a ts beyond the stream time advances it and evicts (as tombstones in Changes) the
// identities inserted before the new stream time minus the window; an insert beyond MaxEntries evicts the
// oldest inserted. id is copied when inserted; ts is truncated to milliseconds.
func (s *Store) Seen(id []byte, ts time.Time) (duplicate bool) {
	t := ts.UnixMilli()
	if t > s.maxTs {
		s.maxTs = t
		s.expire()
	}
	wm := subSat(s.maxTs, s.window)
	if p, ok := s.pos[string(id)]; ok {
		sl := &s.ring[p&s.mask]
		if sl.ts >= subSat(t, s.window) {
			return true
		}
		// Inserted out of order behind newer identities, it outlived its window waiting to reach the head.
		// It is no longer a reason to drop: re-insert it at the event time of this occurrence. (The record
		// cannot also be late unless the window shrank since the store was restored; then it passes.)
		if t < wm {
			return false
		}
		s.insert(sl.id, t, p, true)
		return false
	}
	if t < wm {
		return false
	}
	s.insert(string(id), t, 0, false)
	for len(s.pos) > s.max {
		s.popHead()
	}
	return false
}

// Changes returns the mutations since the last Commit or Rollback, in the order they happened, to be written
// to the changelog in the batch's transaction. The slice is valid until the next Seen, Commit or Rollback.
func (s *Store) Changes() []Mutation { return s.changes }

// Commit makes the changes since the last Commit part of the state Rollback returns to. Call it once the
// transaction holding them (outputs, changelog writes and input offsets) has committed.
func (s *Store) Commit() {
	for p := s.c.head; p < s.head; p++ {
		s.ring[p&s.mask] = slot{} // evicted: release the identity's memory
	}
	clear(s.changes)
	s.changes = s.changes[:0]
	clear(s.undo)
	s.undo = s.undo[:0]
	s.c = s.state()
	s.tidy()
}

// Rollback returns the store to its state at the last Commit (or after the last Restore), dropping the changes
// since. Call it when the transaction holding them aborted: the loop then rewinds to the committed offsets and
// reads the same records again.
func (s *Store) Rollback() {
	for i := len(s.undo) - 1; i >= 0; i-- {
		u := s.undo[i]
		if u.existed {
			s.pos[u.id] = u.prev
		} else {
			delete(s.pos, u.id)
		}
	}
	for p := s.c.tail; p < s.tail; p++ {
		s.ring[p&s.mask] = slot{}
	}
	s.head, s.tail, s.maxTs, s.stale = s.c.head, s.c.tail, s.c.maxTs, s.c.stale
	clear(s.changes)
	s.changes = s.changes[:0]
	clear(s.undo)
	s.undo = s.undo[:0]
}

// Restore applies one upsert read from the changelog. With RestoreTombstone, it rebuilds the committed state
// from a read_committed read of the changelog partition from its beginning, in offset order, before the first
// Seen. Restored state is committed; it writes no changes. It panics when there are uncommitted changes.
//
// Restoring evicts nothing, so the state is exactly what was committed; when the Config is now smaller than it
// was, the excess is evicted by the next Seen that inserts or advances the stream time.
func (s *Store) Restore(id []byte, ts time.Time) {
	s.mustBeCommitted("Restore")
	t := ts.UnixMilli()
	key := string(id)
	if p, ok := s.pos[key]; ok {
		sl := s.ring[p&s.mask]
		if sl.ts == t {
			return
		}
		key = sl.id
		s.stale++
	}
	s.pos[key] = s.push(slot{id: key, ts: t})
	if t > s.maxTs {
		s.maxTs = t
	}
	s.c = s.state()
	s.tidy()
}

// RestoreTombstone applies one tombstone read from the changelog: the identity was evicted.
func (s *Store) RestoreTombstone(id []byte) {
	s.mustBeCommitted("RestoreTombstone")
	if _, ok := s.pos[string(id)]; ok {
		delete(s.pos, string(id))
		s.stale++
		s.c = s.state()
		s.tidy()
	}
}

// RestoreRecord decodes one changelog record and applies it with Restore or RestoreTombstone.
func (s *Store) RestoreRecord(key, value []byte) error {
	m, err := DecodeMutation(key, value)
	if err != nil {
		return fmt.Errorf("restore dedupe store: %w", err)
	}
	if m.Tombstone {
		s.RestoreTombstone(key)
	} else {
		s.Restore(key, m.Timestamp)
	}
	return nil
}

func (s *Store) state() committed {
	return committed{head: s.head, tail: s.tail, maxTs: s.maxTs, stale: s.stale}
}

func (s *Store) mustBeCommitted(op string) {
	if len(s.undo) > 0 || s.state() != s.c {
		panic("dedupe: " + op + " with uncommitted changes; call Commit or Rollback first")
	}
}

// insert points id at a new slot at the tail and records the upsert. prev and existed say where id pointed.
func (s *Store) insert(id string, t int64, prev uint64, existed bool) {
	s.pos[id] = s.push(slot{id: id, ts: t})
	if existed {
		s.stale++
	}
	s.undo = append(s.undo, undoStep{id: id, prev: prev, existed: existed})
	s.changes = append(s.changes, Mutation{ID: id, Timestamp: time.UnixMilli(t)})
}

// expire pops the head while it was inserted before the stream time minus the window. Out-of-order insertions
// behind a newer head wait for it; Seen checks the window itself, so they only hold memory a little longer.
func (s *Store) expire() {
	wm := subSat(s.maxTs, s.window)
	for s.head < s.tail && s.ring[s.head&s.mask].ts < wm {
		s.popHead()
	}
}

// popHead removes the oldest slot, evicting its identity (a tombstone) unless the slot is stale. The slot's
// contents stay in the ring until Commit, for Rollback.
func (s *Store) popHead() {
	p := s.head
	s.head++
	id := s.ring[p&s.mask].id
	if q, ok := s.pos[id]; ok && q == p {
		delete(s.pos, id)
		s.undo = append(s.undo, undoStep{id: id, prev: p, existed: true})
		s.changes = append(s.changes, Mutation{ID: id, Tombstone: true})
		return
	}
	s.stale--
}

// push appends a slot at the tail and returns its position, growing the ring rather than overwrite a slot popped
// since the last Commit.
func (s *Store) push(sl slot) uint64 {
	if s.tail-s.c.head >= uint64(len(s.ring)) {
		s.resize(2*len(s.ring), s.c.head)
	}
	p := s.tail
	s.ring[p&s.mask] = sl
	s.tail++
	return p
}

// resize moves the slots at positions [from, tail) to a ring of n slots; positions do not change.
func (s *Store) resize(n int, from uint64) {
	ring := make([]slot, n)
	mask := uint64(n - 1)
	for p := from; p < s.tail; p++ {
		ring[p&mask] = s.ring[p&s.mask]
	}
	s.ring, s.mask = ring, mask
}

// tidy runs with no uncommitted changes. It drops stale slots once they outnumber live ones (after many
// restored tombstones, say), which renumbers the live slots, and halves a ring that is three quarters empty.
// Both cost O(live) after at least as many operations, so O(1) amortized.
func (s *Store) tidy() {
	live := uint64(len(s.pos))
	if s.stale > 1024 && s.stale > len(s.pos) {
		n := minRing
		for uint64(n) < 2*live {
			n *= 2
		}
		ring := make([]slot, n)
		mask := uint64(n - 1)
		next := s.tail // new positions continue after the old ones
		for p := s.head; p < s.tail; p++ {
			sl := s.ring[p&s.mask]
			if q, ok := s.pos[sl.id]; ok && q == p {
				ring[next&mask] = sl
				s.pos[sl.id] = next
				next++
			}
		}
		s.ring, s.mask = ring, mask
		s.head, s.tail, s.stale = s.tail, next, 0
		s.c = s.state()
		return
	}
	if len(s.ring) > minRing && (s.tail-s.head)*4 < uint64(len(s.ring)) {
		s.resize(len(s.ring)/2, s.head)
	}
}

// subSat returns a-b, saturated at math.MinInt64 instead of wrapping around (b >= 0).
func subSat(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}
