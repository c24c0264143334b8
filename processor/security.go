package processor

import (
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/eosproc/eosproc/internal/rdkafka"
)

// Secret is a configuration value that must never be shown: every way of printing it (fmt's verbs, slog, JSON,
// text marshalling) gives "[redacted]", and only Reveal returns the value. A config dump, a log line or an error
// message that includes a Config or a Secret by accident therefore cannot leak it.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret's value, for the one place that needs it: the librdkafka configuration.
func (s Secret) Reveal() string { return string(s) }

// String hides the value ("" stays "", so a log still shows whether a secret is set).
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString hides the value from %#v.
func (s Secret) GoString() string { return s.String() }

// LogValue hides the value from slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText hides the value from encoding/json and friends.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the value from the environment.
func (s *Secret) UnmarshalText(text []byte) error {
	*s = Secret(text)
	return nil
}

// securityProtocols are librdkafka's security.protocol values.
var securityProtocols = []string{"plaintext", "ssl", "sasl_plaintext", "sasl_ssl"}

// saslMechanisms are the mechanisms the processor's librdkafka build supports without Kerberos or OAuth set-up.
var saslMechanisms = []string{"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"}

// securityProperties maps the security variables onto librdkafka properties for every client (producer,
// consumer, admin). Only what is set appears, so TLS or SASL settings given the old way, in KAFKA_PROPERTIES,
// keep working as long as they do not clash with a variable (validateSecurity refuses that).
func (c Config) securityProperties() Properties {
	p := Properties{}
	set := func(key, value string) {
		if value != "" {
			p[key] = value
		}
	}
	set("security.protocol", c.SecurityProtocol)
	if c.SASLUsername != "" {
		set("sasl.mechanism", c.SASLMechanism)
		set("sasl.username", c.SASLUsername)
		set("sasl.password", c.SASLPassword.Reveal())
	}
	set("ssl.ca.location", c.TLSCAFile)
	set("ssl.certificate.location", c.TLSCertFile)
	set("ssl.key.location", c.TLSKeyFile)
	set("ssl.key.password", c.TLSKeyPassword.Reveal())
	return p
}

// securityVariable names the variable behind each property securityProperties sets, for messages.
var securityVariable = map[string]string{
	"security.protocol":        "SECURITY_PROTOCOL",
	"sasl.mechanism":           "SASL_MECHANISM",
	"sasl.username":            "SASL_USERNAME",
	"sasl.password":            "SASL_PASSWORD",
	"ssl.ca.location":          "TLS_CA_FILE",
	"ssl.certificate.location": "TLS_CERT_FILE",
	"ssl.key.location":         "TLS_KEY_FILE",
	"ssl.key.password":         "TLS_KEY_PASSWORD",
}

// resolveSecretFiles reads each secret given as a file (SASL_PASSWORD_FILE, TLS_KEY_PASSWORD_FILE) into its
// Secret. One trailing newline is dropped: `echo pw > file` and most secret stores write one. It is idempotent,
// so resolving a resolved Config again is harmless. Problems name the variable, never the content.
func (c *Config) resolveSecretFiles() []string {
	var problems []string
	for _, s := range []struct {
		key, fileKey string
		value        *Secret
		file         string
	}{
		{"SASL_PASSWORD", "SASL_PASSWORD_FILE", &c.SASLPassword, c.SASLPasswordFile},
		{"TLS_KEY_PASSWORD", "TLS_KEY_PASSWORD_FILE", &c.TLSKeyPassword, c.TLSKeyPasswordFile},
	} {
		if s.file == "" {
			continue
		}
		b, err := os.ReadFile(s.file)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s%s: cannot read the secret file: %v", EnvPrefix, s.fileKey, err))
			continue
		}
		content := Secret(strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"))
		if *s.value != "" && *s.value != content {
			problems = append(problems, fmt.Sprintf("%s%s and %s%s are both set: set one", EnvPrefix, s.key, EnvPrefix, s.fileKey))
			continue
		}
		*s.value = content
	}
	return problems
}

// validateSecurity checks the security variables against each other and against the properties. bad reports a
// problem for a variable (without the prefix).
func (c *Config) validateSecurity(bad problemFunc) {
	if c.SecurityProtocol != "" {
		c.SecurityProtocol = strings.ToLower(c.SecurityProtocol)
		if !slices.Contains(securityProtocols, c.SecurityProtocol) {
			bad("SECURITY_PROTOCOL", "%q: must be one of %s", c.SecurityProtocol, strings.Join(securityProtocols, ", "))
		}
	}
	c.SASLMechanism = strings.ToUpper(c.SASLMechanism)
	if !slices.Contains(saslMechanisms, c.SASLMechanism) {
		bad("SASL_MECHANISM", "%q: must be one of %s", c.SASLMechanism, strings.Join(saslMechanisms, ", "))
	}
	protocol := c.SecurityProtocol
	if protocol == "" {
		protocol = strings.ToLower(c.KafkaProperties["security.protocol"])
	}
	if c.SASLUsername != "" && !strings.HasPrefix(protocol, "sasl_") {
		bad("SASL_USERNAME", "is set but PROCESSOR_SECURITY_PROTOCOL is %q: set it to sasl_ssl (or sasl_plaintext on a trusted network)", protocol)
	}
	if c.SASLUsername == "" && c.SASLPassword != "" {
		bad("SASL_PASSWORD", "is set but PROCESSOR_SASL_USERNAME is not: set both")
	}
	if (c.TLSCAFile != "" || c.TLSCertFile != "") && !strings.HasSuffix(protocol, "ssl") {
		key := "TLS_CA_FILE"
		if c.TLSCAFile == "" {
			key = "TLS_CERT_FILE"
		}
		bad(key, "is set but PROCESSOR_SECURITY_PROTOCOL is %q, so the clients would not use TLS at all: set it to ssl or sasl_ssl", cmp.Or(protocol, "plaintext"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("TLS_CERT_FILE", "PROCESSOR_TLS_CERT_FILE and PROCESSOR_TLS_KEY_FILE go together (TLS client authentication): set both or neither")
	}
	for key, path := range map[string]string{"TLS_CA_FILE": c.TLSCAFile, "TLS_CERT_FILE": c.TLSCertFile, "TLS_KEY_FILE": c.TLSKeyFile} {
		if path == "" {
			continue
		}
		if f, err := os.Open(path); err != nil {
			bad(key, "cannot read %q: %v", path, err)
		} else {
			f.Close()
		}
	}
	if c.AuthFailureTimeout <= 0 {
		bad("AUTH_FAILURE_TIMEOUT", "%s: must be positive", c.AuthFailureTimeout)
	}
	sec := c.securityProperties()
	for key, props := range map[string]Properties{"KAFKA_PROPERTIES": c.KafkaProperties, "CONSUMER_PROPERTIES": c.ConsumerProperties, "PRODUCER_PROPERTIES": c.ProducerProperties} {
		for _, k := range slices.Sorted(maps.Keys(props)) {
			if _, clash := sec[k]; clash {
				bad(key, "%q is also set by PROCESSOR_%s: set it in one place", k, securityVariable[k])
			}
		}
	}
}

// redacted returns the properties with the values of secret-looking keys replaced.
func (p Properties) redacted() map[string]string {
	out := make(map[string]string, len(p))
	for k, v := range p {
		out[k] = v
		if rdkafka.IsSecret(k) {
			out[k] = redacted
		}
	}
	return out
}

// String prints the properties with secret values redacted (fmt's %v and %+v).
func (p Properties) String() string { return fmt.Sprint(p.redacted()) }

// GoString prints the properties with secret values redacted (fmt's %#v).
func (p Properties) GoString() string { return fmt.Sprintf("%#v", p.redacted()) }

// MarshalJSON writes the properties with secret values redacted.
func (p Properties) MarshalJSON() ([]byte, error) { return json.Marshal(p.redacted()) }

// MarshalJSON writes LogValue, so that a Config handed to a JSON logger as it is shows no secret either.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.LogValue()) }
