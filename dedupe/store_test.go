package dedupe

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
)

const testWindow = 100 * time.Millisecond

func ms(t int64) time.Time { return time.UnixMilli(t) }

func newTestStore(t testing.TB, window time.Duration, maxEntries int) *Store {
	t.Helper()
	s, err := NewStore(Config{Window: window, MaxEntries: maxEntries})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// entry is one live identity, in the store's insertion order.
type entry struct {
	ID string
	TS int64
}

// snapshot is everything that decides the store's future behaviour.
type snapshot struct {
	Entries []entry
	MaxTs   int64
}

func (s *Store) snapshot() snapshot {
	var es []entry
	for p := s.head; p < s.tail; p++ {
		sl := s.ring[p&s.mask]
		if q, ok := s.pos[sl.id]; ok && q == p {
			es = append(es, entry{sl.id, sl.ts})
		}
	}
	if len(es) != len(s.pos) {
		panic(fmt.Sprintf("%d live slots for %d identities", len(es), len(s.pos)))
	}
	if stale := int(s.tail-s.head) - len(es); stale != s.stale {
		panic(fmt.Sprintf("stale count %d, want %d", s.stale, stale))
	}
	return snapshot{Entries: es, MaxTs: s.maxTs}
}

func upsert(id string, t int64) Mutation { return Mutation{ID: id, Timestamp: ms(t)} }
func tombstone(id string) Mutation       { return Mutation{ID: id, Tombstone: true} }

type seen struct {
	id  string
	ts  int64
	dup bool
}

func TestSeenWindow(t *testing.T) {
	w := testWindow.Milliseconds()
	tests := []struct {
		name    string
		records []seen
		changes []Mutation
	}{
		{
			name:    "same timestamp is a duplicate",
			records: []seen{{"a", 1000, false}, {"a", 1000, true}},
			changes: []Mutation{upsert("a", 1000)},
		},
		{
			name:    "inside the window is a duplicate",
			records: []seen{{"a", 1000, false}, {"a", 1000 + w - 1, true}},
			changes: []Mutation{upsert("a", 1000)},
		},
		{
			name:    "at the boundary is a duplicate",
			records: []seen{{"a", 1000, false}, {"a", 1000 + w, true}},
			changes: []Mutation{upsert("a", 1000)},
		},
		{
			name:    "outside the window is new and evicts the old entry first",
			records: []seen{{"a", 1000, false}, {"a", 1000 + w + 1, false}},
			changes: []Mutation{upsert("a", 1000), tombstone("a"), upsert("a", 1000+w+1)},
		},
		{
			name:    "a duplicate does not extend the window",
			records: []seen{{"a", 1000, false}, {"a", 1000 + w, true}, {"a", 1000 + w + 1, false}},
			changes: []Mutation{upsert("a", 1000), tombstone("a"), upsert("a", 1000+w+1)},
		},
		{
			name:    "other identities are not duplicates",
			records: []seen{{"a", 1000, false}, {"b", 1000, false}, {"ab", 1001, false}},
			changes: []Mutation{upsert("a", 1000), upsert("b", 1000), upsert("ab", 1001)},
		},
		{
			name:    "an older copy is a duplicate",
			records: []seen{{"a", 1000, false}, {"a", 1000 - 5*w, true}},
			changes: []Mutation{upsert("a", 1000)},
		},
		{
			name:    "out of order within the window is stored and caught",
			records: []seen{{"a", 1000, false}, {"b", 1000 - w, false}, {"b", 1000 - w + 3, true}},
			changes: []Mutation{upsert("a", 1000), upsert("b", 1000-w)},
		},
		{
			name: "a late record is let through and not stored",
			records: []seen{
				{"a", 1000, false}, {"late", 1000 - w - 1, false}, {"late", 1000 - w - 1, false}, {"a", 1000, true},
			},
			changes: []Mutation{upsert("a", 1000)},
		},
		{
			name: "stream time advancing evicts entries older than the window, oldest first",
			records: []seen{
				{"a", 1000, false}, {"b", 1010, false}, {"c", 1020, false}, {"d", 1015 + w, false},
				{"a", 1015 + w, false}, {"c", 1015 + w, true},
			},
			changes: []Mutation{
				upsert("a", 1000), upsert("b", 1010), upsert("c", 1020),
				tombstone("a"), tombstone("b"), upsert("d", 1015+w), upsert("a", 1015+w),
			},
		},
		{
			name: "an out-of-order entry past its window is new again though not yet evicted",
			records: []seen{
				{"a", 1000, false}, {"b", 960, false}, {"c", 1000 + w/2, false},
				// b (960) expired at stream time 1060+ but waits behind a (1000) in the ring.
				{"b", 1061, false}, {"b", 1062, true},
			},
			changes: []Mutation{upsert("a", 1000), upsert("b", 960), upsert("c", 1000+w/2), upsert("b", 1061)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t, testWindow, 1000)
			for i, r := range tt.records {
				if got := s.Seen([]byte(r.id), ms(r.ts)); got != r.dup {
					t.Fatalf("record %d: Seen(%q, %d) = %v, want %v", i, r.id, r.ts, got, r.dup)
				}
			}
			if got := s.Changes(); !reflect.DeepEqual(got, tt.changes) {
				t.Fatalf("Changes() =\n%v\nwant\n%v", got, tt.changes)
			}
			s.snapshot() // checks the invariants
		})
	}
}

func TestMaxEntriesEvictsOldestInsertedFirst(t *testing.T) {
	s := newTestStore(t, time.Hour, 3)
	for i, id := range []string{"a", "b", "c", "d", "e"} {
		if s.Seen([]byte(id), ms(int64(1000+i))) {
			t.Fatalf("%s: duplicate", id)
		}
	}
	want := []Mutation{
		upsert("a", 1000), upsert("b", 1001), upsert("c", 1002),
		upsert("d", 1003), tombstone("a"),
		upsert("e", 1004), tombstone("b"),
	}
	if got := s.Changes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Changes() =\n%v\nwant\n%v", got, want)
	}
	if s.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", s.Len())
	}
	// Insertion order, not event time: an out-of-order insert is evicted after the ones before it.
	s.Commit()
	s.Seen([]byte("old"), ms(999))
	s.Seen([]byte("f"), ms(1005))
	want = []Mutation{upsert("old", 999), tombstone("c"), upsert("f", 1005), tombstone("d")}
	if got := s.Changes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Changes() =\n%v\nwant\n%v", got, want)
	}
	if !s.Seen([]byte("e"), ms(1005)) {
		t.Fatal("a kept identity is not a duplicate")
	}
	if s.Seen([]byte("a"), ms(1005)) {
		t.Fatal("an evicted identity is still a duplicate")
	}
}

func TestRollbackRestoresCommittedState(t *testing.T) {
	s := newTestStore(t, testWindow, 50)
	feed := func(from, n int) []bool {
		var dups []bool
		for i := from; i < from+n; i++ {
			// Mostly increasing time, some repeats and some out of order, some late.
			id := "id-" + strconv.Itoa(i%70)
			ts := int64(10*i - 37*(i%5))
			dups = append(dups, s.Seen([]byte(id), ms(ts)))
		}
		return dups
	}
	feed(0, 40)
	s.Commit()
	before := s.snapshot()

	// A batch that inserts, evicts by window and by count, re-inserts, and grows the ring several times.
	dups1 := feed(40, 300)
	changes1 := slices.Clone(s.Changes())
	if len(changes1) == 0 {
		t.Fatal("the batch changed nothing")
	}
	s.Rollback()
	if got := s.snapshot(); !reflect.DeepEqual(got, before) {
		t.Fatalf("after Rollback:\n%+v\nwant\n%+v", got, before)
	}
	if len(s.Changes()) != 0 {
		t.Fatalf("Changes() after Rollback = %v", s.Changes())
	}

	// Replaying the batch decides and writes exactly the same.
	dups2 := feed(40, 300)
	if !slices.Equal(dups1, dups2) {
		t.Fatal("replayed batch decided differently")
	}
	if !reflect.DeepEqual(s.Changes(), changes1) {
		t.Fatal("replayed batch wrote different changes")
	}
	s.Commit()
	after := s.snapshot()
	s.Rollback()
	if got := s.snapshot(); !reflect.DeepEqual(got, after) {
		t.Fatalf("Rollback after Commit changed the state:\n%+v\nwant\n%+v", got, after)
	}
}

func TestRestoreFromChangelogReproducesStore(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := newTestStore(t, testWindow, 500)
	type rec struct{ key, value []byte }
	var log []rec
	ts := int64(0)
	for batch := range 400 {
		for range 50 {
			ts += rng.Int64N(6) - 1 // mostly increasing
			s.Seen([]byte("id-"+strconv.Itoa(rng.IntN(2000))), ms(ts-rng.Int64N(120)))
		}
		if batch%7 == 3 {
			s.Rollback() // an aborted transaction: its changes never reach the changelog
			continue
		}
		for _, m := range s.Changes() {
			log = append(log, rec{m.Key(), m.Value()})
		}
		s.Commit()
	}
	tombstones := 0
	for _, r := range log {
		if r.value == nil {
			tombstones++
		}
	}
	if tombstones < 2000 {
		t.Fatalf("only %d tombstones in the changelog; the test should exercise compaction", tombstones)
	}

	restored := newTestStore(t, testWindow, 500)
	for i, r := range log {
		if err := restored.RestoreRecord(r.key, r.value); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	want, got := s.snapshot(), restored.snapshot()
	if !reflect.DeepEqual(got.Entries, want.Entries) {
		t.Fatalf("restored entries differ:\n%v\nwant\n%v", got.Entries, want.Entries)
	}
	if restored.stale > 1024 && restored.stale > restored.Len() {
		t.Fatalf("%d stale slots for %d entries after restore", restored.stale, restored.Len())
	}
	// Compaction keeps only the last record of each key: restoring that gives the same entries.
	last := map[string]int{}
	for i, r := range log {
		last[string(r.key)] = i
	}
	compacted := newTestStore(t, testWindow, 500)
	for i, r := range log {
		if last[string(r.key)] == i {
			if err := compacted.RestoreRecord(r.key, r.value); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := compacted.snapshot(); !reflect.DeepEqual(got.Entries, want.Entries) {
		t.Fatalf("restored from the compacted changelog:\n%v\nwant\n%v", got.Entries, want.Entries)
	}
}

func TestRestoreSequence(t *testing.T) {
	s := newTestStore(t, time.Hour, 10)
	steps := []struct {
		key   string
		value []byte
	}{
		{"a", EncodeTimestamp(ms(1))},
		{"b", EncodeTimestamp(ms(2))},
		{"a", nil},
		{"c", EncodeTimestamp(ms(3))},
		{"a", EncodeTimestamp(ms(4))},
		{"b", EncodeTimestamp(ms(2))}, // repeated: no change
		{"zz", nil},                   // tombstone of an unknown identity: no change
	}
	for _, st := range steps {
		if err := s.RestoreRecord([]byte(st.key), st.value); err != nil {
			t.Fatal(err)
		}
	}
	want := snapshot{Entries: []entry{{"b", 2}, {"c", 3}, {"a", 4}}, MaxTs: 4}
	if got := s.snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored %+v, want %+v", got, want)
	}
	if len(s.Changes()) != 0 {
		t.Fatalf("restore wrote changes: %v", s.Changes())
	}
	if err := s.RestoreRecord([]byte("a"), []byte{1, 2}); err == nil {
		t.Fatal("a 2-byte value restored")
	}
	if !s.Seen([]byte("a"), ms(5)) || s.Seen([]byte("d"), ms(5)) {
		t.Fatal("restored store decides wrongly")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Restore with uncommitted changes did not panic")
		}
	}()
	s.Restore([]byte("e"), ms(6))
}

func TestRestoredExcessIsEvictedAfterConfigShrinks(t *testing.T) {
	s := newTestStore(t, time.Hour, 3)
	for i, id := range []string{"a", "b", "c", "d", "e"} {
		s.Restore([]byte(id), ms(int64(i)))
	}
	if s.Len() != 5 {
		t.Fatalf("Len() = %d after restoring 5, want 5 (restore evicts nothing)", s.Len())
	}
	s.Seen([]byte("f"), ms(5))
	want := []Mutation{upsert("f", 5), tombstone("a"), tombstone("b"), tombstone("c")}
	if got := s.Changes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Changes() =\n%v\nwant\n%v", got, want)
	}
}

func TestNewStoreConfig(t *testing.T) {
	s, err := NewStore(Config{})
	if err != nil || s.window != DefaultWindow.Milliseconds() || s.max != DefaultMaxEntries {
		t.Fatalf("zero Config: %v, window %d, max %d", err, s.window, s.max)
	}
	for _, c := range []Config{{Window: -time.Second}, {Window: time.Microsecond}, {MaxEntries: -1}} {
		if _, err := NewStore(c); err == nil {
			t.Errorf("NewStore(%+v) succeeded", c)
		}
	}
}

// model is the store's semantics written the slow, obvious way, to check the store against.
type model struct {
	window, max int64
	entries     []entry
	maxTs       int64
	changes     []Mutation
}

func (m *model) seen(id string, t int64) bool {
	if t > m.maxTs {
		m.maxTs = t
		for len(m.entries) > 0 && m.entries[0].TS < m.maxTs-m.window {
			m.evict()
		}
	}
	wm := m.maxTs - m.window
	i := slices.IndexFunc(m.entries, func(e entry) bool { return e.ID == id })
	if i >= 0 && t-m.entries[i].TS <= m.window {
		return true
	}
	if t < wm {
		return false
	}
	if i >= 0 {
		m.entries = slices.Delete(m.entries, i, i+1)
	}
	m.entries = append(m.entries, entry{id, t})
	m.changes = append(m.changes, upsert(id, t))
	for int64(len(m.entries)) > m.max {
		m.evict()
	}
	return false
}

func (m *model) evict() {
	m.changes = append(m.changes, tombstone(m.entries[0].ID))
	m.entries = m.entries[1:]
}

func TestStoreMatchesModel(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		window, max := int64(1+rng.IntN(200)), 1+rng.IntN(100)
		s := newTestStore(t, time.Duration(window)*time.Millisecond, max)
		m := &model{window: window, max: int64(max), maxTs: -1 << 62}
		committed := *m
		ts := int64(0)
		checkChanges := func(op int) {
			if got := s.Changes(); !slices.Equal(got, m.changes) && !(len(got) == 0 && len(m.changes) == 0) {
				t.Fatalf("seed %d op %d: changes\n%v\nmodel\n%v", seed, op, got, m.changes)
			}
		}
		for op := range 20000 {
			switch r := rng.IntN(100); {
			case r < 2:
				checkChanges(op)
				s.Commit()
				m.changes = nil
				committed = *m
				committed.entries = slices.Clone(m.entries)
			case r < 3:
				checkChanges(op)
				s.Rollback()
				*m = committed
				m.entries = slices.Clone(committed.entries)
			default:
				ts += rng.Int64N(window/4+2) - 1
				t0 := ts - rng.Int64N(window*3/2+1)*int64(rng.IntN(2))
				id := strconv.Itoa(rng.IntN(3 * max))
				if got, want := s.Seen([]byte(id), ms(t0)), m.seen(id, t0); got != want {
					t.Fatalf("seed %d op %d: Seen(%s, %d) = %v, model says %v", seed, op, id, t0, got, want)
				}
			}
			if op%16 == 0 {
				if got := s.snapshot().Entries; !slices.Equal(got, m.entries) && !(len(got) == 0 && len(m.entries) == 0) {
					t.Fatalf("seed %d op %d: entries\n%v\nmodel\n%v", seed, op, got, m.entries)
				}
			}
		}
	}
}
