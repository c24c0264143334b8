package processor

import (
	"log/slog"
	"slices"
	"testing"
)

func TestBatchesStayWithinTheSmallestTopicLimit(t *testing.T) {
	for _, tt := range []struct {
		name   string
		limits map[string]int
		props  map[string]string
		want   string // batch.size afterwards, "" for unset
	}{
		{"no limits known", nil, map[string]string{}, ""},
		{"limits above librdkafka's default", map[string]int{"out": 1_048_588, "dlq": 2_000_000}, map[string]string{}, ""},
		{"one topic below it", map[string]int{"out": 1_048_588, "dlq": 65_536}, map[string]string{}, "65536"},
		{"the user's batch.size above a limit", map[string]int{"out": 100_000}, map[string]string{"batch.size": "500000"}, "100000"},
		{"the user's batch.size already within", map[string]int{"out": 100_000}, map[string]string{"batch.size": "50000"}, "50000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.props["batch.size"]
			got := batchesWithin(tt.limits, tt.props, slog.New(slog.DiscardHandler))
			if got["batch.size"] != tt.want {
				t.Errorf("batch.size = %q, want %q", got["batch.size"], tt.want)
			}
			if tt.props["batch.size"] != before {
				t.Error("the caller's properties were changed")
			}
		})
	}
}

// A broker refuses a DescribeConfigs naming a topic twice, which left every limit unknown when the route topics
// listed the output topic (as the runbook's re-drive does).
func TestOutputTopicsNameEachTopicOnce(t *testing.T) {
	cfg := Config{OutputTopic: "orders", DeadLetterTopic: "app-dlq", RouteTopics: []string{"orders", " payments", "payments"}}
	if got, want := cfg.outputTopics(), []string{"app-dlq", "orders", "payments"}; !slices.Equal(got, want) {
		t.Errorf("outputTopics = %q, want %q", got, want)
	}
}
