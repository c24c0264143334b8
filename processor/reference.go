package processor

import (
	"fmt"
	"io"
	"strings"
)

// WriteReference writes the configuration reference (docs/configuration.md) from the Config struct's tags, the
// same source as `processor -h`, so the two cannot disagree. `make docs` regenerates the file; a test fails while
// it is stale.
func WriteReference(w io.Writer) {
	fmt.Fprint(w, `# Configuration reference

<!-- Generated from processor.Config by `+"`make docs`"+`; do not edit. A test fails while this file is stale. -->

The processor is configured only by environment variables; `+"`processor -h`"+` prints the same list. Unknown
`+"`PROCESSOR_`"+` variables (a typo) and invalid values stop it at start with exit code 2 and a message naming the
variable. Where a Kafka Streams or Spark setting means the same, its name is given.

Secrets (`+"`PROCESSOR_SASL_PASSWORD`"+`, `+"`PROCESSOR_TLS_KEY_PASSWORD`"+`, and secret-looking keys in the
`+"`..._PROPERTIES`"+` variables) never appear in logs, `+"`/metrics`"+`, `+"`-h`"+` or error messages. Prefer the
`+"`..._FILE`"+` variants, which read the secret from a file such as a mounted Kubernetes Secret.

| variable | default | meaning |
|---|---|---|
`)
	for _, f := range fields() {
		def := "`" + f.def + "`"
		switch {
		case f.defDoc != "":
			def = mdEscape(f.defDoc)
		case f.def == "":
			def = "-"
		}
		fmt.Fprintf(w, "| `%s%s` | %s | %s |\n", EnvPrefix, f.key, def, mdEscape(f.help))
	}
	fmt.Fprint(w, `
Exit codes: 0 clean shutdown (SIGTERM or SIGINT), 1 runtime error (fenced by another instance, authentication or
TLS refused for `+"`PROCESSOR_AUTH_FAILURE_TIMEOUT`"+`, ...), 2 invalid configuration.
`)
}

// mdEscape keeps help text literal in a Markdown table cell.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}
