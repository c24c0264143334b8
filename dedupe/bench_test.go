package dedupe

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/eosproc/eosproc/stream"
)

// testIDs returns n distinct identities of 16 to 36 bytes (26 on average), like order ids or UUIDs.
func testIDs(n int) [][]byte {
	rng := rand.New(rand.NewPCG(42, 42))
	ids := make([][]byte, n)
	const hex = "0123456789abcdef"
	for i := range ids {
		id := strconv.AppendInt(make([]byte, 0, 36), int64(i), 36)
		id = append(id, '-')
		for l := 16 + rng.IntN(21); len(id) < l; {
			id = append(id, hex[rng.IntN(16)])
		}
		ids[i] = id
	}
	return ids
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkStoreMemory reports the heap a committed store of 1,000,000 identities holds per identity, the
// identity's bytes included (B/key), and the identity bytes alone (idB/key) for comparison.
func BenchmarkStoreMemory(b *testing.B) {
	const n = 1_000_000
	ids := testIDs(n)
	idBytes := 0
	for _, id := range ids {
		idBytes += len(id)
	}
	var perKey float64
	for b.Loop() {
		before := heapInUse()
		s, err := NewStore(Config{Window: 24 * time.Hour, MaxEntries: n})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.UnixMilli(1_700_000_000_000)
		for i, id := range ids {
			s.Seen(id, t0.Add(time.Duration(i)*time.Microsecond))
			if i%1000 == 999 {
				s.Commit()
			}
		}
		s.Commit()
		after := heapInUse()
		if s.Len() != n {
			b.Fatalf("Len() = %d, want %d", s.Len(), n)
		}
		perKey = float64(after-before) / n
		runtime.KeepAlive(s)
	}
	b.ReportMetric(perKey, "B/key")
	b.ReportMetric(float64(idBytes)/n, "idB/key")
}

// BenchmarkMapMemory is the floor to compare BenchmarkStoreMemory with: a bare map[string]int64.
func BenchmarkMapMemory(b *testing.B) {
	const n = 1_000_000
	ids := testIDs(n)
	var perKey float64
	for b.Loop() {
		before := heapInUse()
		m := make(map[string]int64)
		for i, id := range ids {
			m[string(id)] = int64(i)
		}
		perKey = float64(heapInUse()-before) / n
		runtime.KeepAlive(m)
	}
	b.ReportMetric(perKey, "B/key")
}

// BenchmarkSeen measures one Seen in steady state, committing every 1,000 records as the loop would.
func BenchmarkSeen(b *testing.B) {
	const pool = 2_000_000
	ids := testIDs(pool)
	t0 := time.UnixMilli(1_700_000_000_000)
	run := func(b *testing.B, cfg Config, step time.Duration, idOf func(i int) []byte, wantDup bool) {
		s, err := NewStore(cfg)
		if err != nil {
			b.Fatal(err)
		}
		// Fill to the steady state first.
		i := 0
		for ; i < pool; i++ {
			s.Seen(idOf(i), t0.Add(time.Duration(i)*step))
			if i%1000 == 999 {
				s.Commit()
			}
		}
		s.Commit()
		b.ResetTimer()
		for b.Loop() {
			if s.Seen(idOf(i), t0.Add(time.Duration(i)*step)) != wantDup {
				b.Fatalf("record %d: duplicate = %v, want %v", i, !wantDup, wantDup)
			}
			i++
			if i%1000 == 999 {
				s.Commit()
			}
		}
	}
	b.Run("new/evict-by-count/1M", func(b *testing.B) {
		// Each identity comes back after 2M others, long after its eviction from a 1M store.
		run(b, Config{Window: 24 * time.Hour, MaxEntries: 1_000_000}, time.Millisecond,
			func(i int) []byte { return ids[i%pool] }, false)
	})
	b.Run("new/evict-by-window/1M", func(b *testing.B) {
		// One record per millisecond and a 1,000-second window: about 1M identities held.
		run(b, Config{Window: 1000 * time.Second, MaxEntries: 10_000_000}, time.Millisecond,
			func(i int) []byte { return ids[i%pool] }, false)
	})
	b.Run("duplicate-random/2M", func(b *testing.B) {
		// The record repeats any of the 2M identities held: a cache miss per lookup.
		run(b, Config{Window: 24 * time.Hour, MaxEntries: 2_000_000}, time.Microsecond,
			func(i int) []byte { return ids[(i*7919)%pool] }, true)
	})
	b.Run("duplicate-recent/2M", func(b *testing.B) {
		// The record repeats one of the 1,000 identities seen last: the lookups stay in cache.
		run(b, Config{Window: 24 * time.Hour, MaxEntries: 2_000_000}, time.Microsecond,
			func(i int) []byte {
				if i < pool {
					return ids[i]
				}
				return ids[pool-1000+i%1000]
			}, true)
	})
}

// orderJSON is a typical 340-byte event with the identity in the middle.
var orderJSON = []byte(`{"type":"order.created","version":3,"source":"shop-eu-1","time":"2026-05-04T10:11:12.345Z",` +
	`"order":{"id":"9f1c2e7a-55b3-4d1e-9c2f-0a6b1e4d7c88","customer":{"id":48151623,"tier":"gold"},` +
	`"lines":[{"sku":"A-100","qty":2,"price":19.99},{"sku":"B-7","qty":1,"price":5.5}],"total":45.48,"currency":"EUR"},` +
	`"meta":{"trace":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","retry":false}}`)

func BenchmarkExtractJSON(b *testing.B) {
	r := stream.Record{Value: orderJSON}
	want := []byte("9f1c2e7a-55b3-4d1e-9c2f-0a6b1e4d7c88")
	b.Run("extract", func(b *testing.B) {
		spec := IdentitySpec{From: FromJSON, Path: "order.id"}
		b.SetBytes(int64(len(orderJSON)))
		b.ReportAllocs()
		for b.Loop() {
			id, err := spec.Extract(r)
			if err != nil || !bytes.Equal(id, want) {
				b.Fatalf("%q, %v", id, err)
			}
		}
	})
	b.Run("extract/number", func(b *testing.B) {
		spec := IdentitySpec{From: FromJSON, Path: "order.customer.id"}
		b.SetBytes(int64(len(orderJSON)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := spec.Extract(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	// gjson on its own, as Extract uses it (validated first) and as it is often used (not validated): what the
	// path walk and the alias into the value add or save.
	b.Run("gjson-validated", func(b *testing.B) {
		b.SetBytes(int64(len(orderJSON)))
		b.ReportAllocs()
		for b.Loop() {
			if !gjson.ValidBytes(orderJSON) {
				b.Fatal("not valid")
			}
			if id := gjson.GetBytes(orderJSON, "order.id"); id.Str != string(want) {
				b.Fatalf("%q", id.Str)
			}
		}
	})
	b.Run("gjson-unvalidated", func(b *testing.B) {
		b.SetBytes(int64(len(orderJSON)))
		b.ReportAllocs()
		for b.Loop() {
			if id := gjson.GetBytes(orderJSON, "order.id"); id.Str != string(want) {
				b.Fatalf("%q", id.Str)
			}
		}
	})
	b.Run("encoding-json-map", func(b *testing.B) {
		b.SetBytes(int64(len(orderJSON)))
		b.ReportAllocs()
		for b.Loop() {
			var v map[string]any
			if err := json.Unmarshal(orderJSON, &v); err != nil {
				b.Fatal(err)
			}
			if v["order"].(map[string]any)["id"].(string) != string(want) {
				b.Fatal("wrong id")
			}
		}
	})
	b.Run("encoding-json-struct", func(b *testing.B) {
		b.SetBytes(int64(len(orderJSON)))
		b.ReportAllocs()
		for b.Loop() {
			var v struct {
				Order struct {
					ID json.RawMessage `json:"id"`
				} `json:"order"`
			}
			if err := json.Unmarshal(orderJSON, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json-tokens", func(b *testing.B) {
		b.SetBytes(int64(len(orderJSON)))
		b.ReportAllocs()
		for b.Loop() {
			if got, ok := decodeField(orderJSON, "order.id"); !ok || got != string(want) {
				b.Fatal("wrong id")
			}
		}
	})
}
