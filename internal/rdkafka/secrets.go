package rdkafka

import "strings"

// secretProperties are the librdkafka properties whose values are never shown: every property librdkafka 2.11
// itself redacts in its configuration dump (TestLibrdkafkaRedactsOnlyWhatWeCallSecret in internal/librdkafka
// pins this against the bundled library). sasl.username is on librdkafka's list, so it is on ours.
var secretProperties = []string{
	"sasl.username",
	"sasl.password",
	"sasl.oauthbearer.config",
	"sasl.oauthbearer.client.secret",
	"sasl.oauthbearer.assertion.private.key.file",
	"sasl.oauthbearer.assertion.private.key.passphrase",
	"sasl.oauthbearer.assertion.private.key.pem",
	"ssl.key.location",
	"ssl.key.password",
	"ssl.key.pem",
	"ssl.ca.pem",
	"ssl.keystore.password",
	"ssl_key",
}

// secretMarkers catch what a later librdkafka, a plugin or a typo may name a secret property.
var secretMarkers = []string{"password", "secret", "sasl.jaas", "token", "credential", "private", "keystore"}

// IsSecret reports whether s, a property name or a raw "key=value" text that failed to parse, may carry a secret
// value, which must then not be shown in logs or errors.
func IsSecret(s string) bool {
	ls := strings.ToLower(s)
	for _, list := range [][]string{secretProperties, secretMarkers} {
		for _, m := range list {
			if strings.Contains(ls, m) {
				return true
			}
		}
	}
	return false
}
