package pipeline

import (
	"context"
	"testing"

	"github.com/eosproc/eosproc/stream"
)

// The figures in docs/transforms.md come from these benchmarks: one record of a ~200-byte JSON order with two
// headers through a pipeline of one stage (or all five), ns and allocations per record. "none" is the floor every
// pipeline pays (the output record and its source header); "parse" adds parsing the value, which the first stage
// that reads value pays once for all the others.
//
//	go test -run '^$' -bench . -benchmem ./internal/pipeline

const benchValue = `{"id": 1234567, "customer": "c-0042", "amount": 129.95, "currency": "EUR", "country": "DE", ` +
	`"items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}], "status": "paid"}`

func benchStages() map[string]Config {
	return map[string]Config{
		"none":    {},
		"parse":   {Key: `value != nil ? key : ""`},
		"filter":  {Filter: `value.status == "paid" && value.amount > 100`},
		"map":     {Map: `{"id": value.id, "customer": value.customer, "cents": int(round(value.amount * 100)), "lines": len(value.items)}`},
		"key":     {Key: `value.customer`},
		"key-raw": {Key: `headers["tenant"] + "/" + key`}, // no value read: no JSON parse
		"headers": {HeadersSet: `{"country": value.country, "currency": value.currency}`, HeadersDrop: []string{"trace"}},
		"route":   {Route: `value.amount > 100 ? "orders-large" : "orders-small"`, RouteTopics: []string{"orders-large", "orders-small"}},
		"all": {
			Filter:      `value.status == "paid"`,
			Map:         `{"id": value.id, "customer": value.customer, "cents": int(round(value.amount * 100))}`,
			Key:         `value.customer`,
			HeadersSet:  `{"currency": "EUR"}`,
			Route:       `value.cents > 10000 ? "orders-large" : "orders-small"`,
			RouteTopics: []string{"orders-large", "orders-small"},
		},
	}
}

func BenchmarkStage(b *testing.B) {
	in := stream.Record{
		Topic: "orders", Partition: 1, Offset: 1000, Key: []byte("c-0042"), Value: []byte(benchValue),
		Headers: []stream.Header{{Key: "tenant", Value: []byte("t1")}, {Key: "trace", Value: []byte("abc")}},
	}
	for _, name := range []string{"none", "parse", "filter", "map", "key", "key-raw", "headers", "route", "all"} {
		b.Run(name, func(b *testing.B) {
			p, err := Compile(benchStages()[name])
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				out, err := p.Transform(ctx, in)
				if err != nil || len(out) != 1 {
					b.Fatal(out, err)
				}
			}
		})
	}
}

func BenchmarkIdentity(b *testing.B) {
	in := stream.Record{Topic: "orders", Partition: 1, Offset: 1000, Key: []byte("c-0042"), Value: []byte(benchValue)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := stream.Identity(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}
