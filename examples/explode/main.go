// Command explode shows the processor embedded as a library: the same exactly-once loop, configuration and
// endpoints as the binary, with a transform written in Go. Each order read becomes one record per line item,
// keyed by SKU, which the configured stages cannot do (they give at most one output per input).
//
// Run it like the binary, configured by the same PROCESSOR_* variables:
//
//	PROCESSOR_BROKERS=localhost:9092 PROCESSOR_INPUT_TOPICS=orders PROCESSOR_OUTPUT_TOPIC=order-lines \
//	  go run ./examples/explode
package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/eosproc/eosproc/processor"
	"github.com/eosproc/eosproc/stream"
)

// main is the binary's own: the same variables, signals, logs and exit codes, with explode as the transform.
func main() { processor.Main(explode) }

type order struct {
	ID    string `json:"id"`
	Items []struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	} `json:"items"`
}

type line struct {
	Order string `json:"order"`
	Line  int    `json:"line"`
	SKU   string `json:"sku"`
	Qty   int    `json:"qty"`
}

// explode is the transform. It runs inside the batch's transaction and may run again for the same record after
// an abort, so it only computes: no calls to other systems. An error dead-letters the order with the reason.
func explode(_ context.Context, in stream.Record) ([]stream.Record, error) {
	var o order
	if err := json.Unmarshal(in.Value, &o); err != nil {
		return nil, fmt.Errorf("order is not JSON: %w", err)
	}
	if len(o.Items) == 0 {
		return nil, fmt.Errorf("order %q has no items", o.ID)
	}
	// Every output names its input, as the binary's transforms do, so a line can be traced to its order.
	source := stream.Header{Key: stream.SourceHeader, Value: []byte(in.Source())}
	out := make([]stream.Record, 0, len(o.Items))
	for i, item := range o.Items {
		value, err := json.Marshal(line{Order: o.ID, Line: i + 1, SKU: item.SKU, Qty: item.Qty})
		if err != nil {
			return nil, err
		}
		out = append(out, stream.Record{
			Key:       []byte(item.SKU), // equal SKUs land in one partition, in order
			Value:     value,
			Headers:   []stream.Header{source},
			Timestamp: in.Timestamp,
		})
	}
	return out, nil
}
