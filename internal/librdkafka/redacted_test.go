package librdkafka

import (
	"slices"
	"testing"

	"github.com/eosproc/eosproc/internal/rdkafka"
)

// TestLibrdkafkaRedactsOnlyWhatWeCallSecret pins rdkafka.IsSecret to the bundled librdkafka: every property
// librdkafka redacts in its own configuration dump must be one the processor never shows either.
func TestLibrdkafkaRedactsOnlyWhatWeCallSecret(t *testing.T) {
	const marker = "eos-marker-value"
	redacted, checked := redactedProperties(marker)
	// Some of the string properties every librdkafka 2.x has; if these are not seen, the dump was not read.
	for _, want := range []string{"client.id", "sasl.password", "ssl.key.password"} {
		if !slices.Contains(checked, want) {
			t.Fatalf("%q not seen in librdkafka's configuration dump (checked %d properties: %v)", want, len(checked), checked)
		}
	}
	if !slices.Contains(redacted, "sasl.password") || slices.Contains(redacted, "client.id") {
		t.Fatalf("librdkafka's redaction not read right: redacted %v", redacted)
	}
	for _, name := range redacted {
		if !rdkafka.IsSecret(name) {
			t.Errorf("librdkafka redacts %q but rdkafka.IsSecret does not flag it: the processor would log its value", name)
		}
	}
	t.Logf("%d string properties checked, librdkafka redacts %d: %v", len(checked), len(redacted), redacted)
}
