package dedupe

import (
	"errors"
	"fmt"
	"strings"

	"github.com/eosproc/eosproc/stream"
)

// Source says where a record's identity is read from.
type Source uint8

const (
	// FromKey takes the Kafka record key as the identity. It is the zero value.
	FromKey Source = iota
	// FromHeader takes the value of the header named IdentitySpec.Header.
	FromHeader
	// FromJSON takes the string or number at IdentitySpec.Path in the record value, a JSON object.
	FromJSON
)

// Errors an extraction wraps, so the caller can tell a record without an identity (dead-letter it, count it)
// from one whose value is not JSON at all. Test with errors.Is.
var (
	// ErrNoIdentity: the key, the header or the JSON field is absent, null, empty, or not a string or number.
	ErrNoIdentity = errors.New("no identity")
	// ErrMalformedJSON: the value is not valid JSON (or not an object, for a JSON path).
	ErrMalformedJSON = errors.New("malformed JSON")
)

// IdentitySpec says how to read a record's identity, the bytes two records must share to be duplicates. The zero
// value reads the Kafka key. Build one with ParseIdentitySpec from a configuration string, or as a literal:
//
//	dedupe.IdentitySpec{From: dedupe.FromJSON, Path: "order.id"}
//
// An empty identity (a null or empty key, an empty header value, an empty JSON string) is an error, not an
// identity: every keyless record sharing one identity would drop all but the first within each window.
type IdentitySpec struct {
	From Source
	// Header is the header name for FromHeader, compared exactly (case-sensitive). When the header repeats, the
	// last occurrence wins, as with Kafka's Headers.lastHeader.
	Header string
	// Path is the dotted field path for FromJSON, such as "order.id": each segment names a member of an object
	// (a member name containing a dot cannot be addressed; array elements cannot either). The field must be a
	// string, whose decoded text is the identity, or a number, whose literal text is the identity: 42 and "42"
	// are then the same identity, while 42 and 42.0 are not. When a member name repeats, the first one wins.
	Path string
}

// ParseIdentitySpec reads the configuration form of an IdentitySpec: "key", "header:<name>" or "json:<path>"
// (for example "json:order.id"). Surrounding spaces are ignored; the source names are lower case.
func ParseIdentitySpec(spec string) (IdentitySpec, error) {
	s := strings.TrimSpace(spec)
	kind, arg, hasArg := strings.Cut(s, ":")
	var is IdentitySpec
	switch kind {
	case "key":
		if hasArg {
			return IdentitySpec{}, fmt.Errorf("dedupe identity %q: key takes no argument (want key, header:<name> or json:<path>)", spec)
		}
		return IdentitySpec{From: FromKey}, nil
	case "header":
		is = IdentitySpec{From: FromHeader, Header: arg}
	case "json":
		is = IdentitySpec{From: FromJSON, Path: arg}
	default:
		return IdentitySpec{}, fmt.Errorf("dedupe identity %q: unknown source %q (want key, header:<name> or json:<path>)", spec, kind)
	}
	if err := is.Validate(); err != nil {
		return IdentitySpec{}, fmt.Errorf("dedupe identity %q: %w", spec, err)
	}
	return is, nil
}

// Validate reports whether the spec can extract anything: a known source, a header name for FromHeader, a path
// of non-empty segments for FromJSON.
func (is IdentitySpec) Validate() error {
	switch is.From {
	case FromKey:
		return nil
	case FromHeader:
		if is.Header == "" {
			return errors.New("header name is empty (want header:<name>)")
		}
		return nil
	case FromJSON:
		if is.Path == "" {
			return errors.New("JSON path is empty (want json:<field>[.<field>...])")
		}
		for seg := range strings.SplitSeq(is.Path, ".") {
			if seg == "" {
				return fmt.Errorf("JSON path %q has an empty segment (want fields separated by single dots)", is.Path)
			}
		}
		return nil
	default:
		return fmt.Errorf("unknown identity source %d", is.From)
	}
}

// String returns the configuration form ParseIdentitySpec reads.
func (is IdentitySpec) String() string {
	switch is.From {
	case FromKey:
		return "key"
	case FromHeader:
		return "header:" + is.Header
	case FromJSON:
		return "json:" + is.Path
	default:
		return fmt.Sprintf("source(%d)", is.From)
	}
}

// Extract returns the identity of r. The result may alias r.Key, a header value or r.Value: copy it to keep it
// beyond the record (Store.Seen copies what it keeps). An error wraps ErrNoIdentity or ErrMalformedJSON and says
// what was missing, for the dead-letter reason.
//
// A JSON value is validated whole, so that malformed JSON anywhere in it is an error, as if it had been decoded;
// then only the objects on the path are read, without allocating (except for a string with escapes).
func (is IdentitySpec) Extract(r stream.Record) ([]byte, error) {
	switch is.From {
	case FromKey:
		if len(r.Key) == 0 {
			return nil, fmt.Errorf("identity from key: record has a null or empty key: %w", ErrNoIdentity)
		}
		return r.Key, nil
	case FromHeader:
		if is.Header == "" {
			return nil, errors.New("identity from header: header name is empty")
		}
		found := false
		var v []byte
		for _, h := range r.Headers {
			if h.Key == is.Header {
				found, v = true, h.Value
			}
		}
		if !found {
			return nil, fmt.Errorf("identity from header %q: record has no such header: %w", is.Header, ErrNoIdentity)
		}
		if len(v) == 0 {
			return nil, fmt.Errorf("identity from header %q: header value is empty: %w", is.Header, ErrNoIdentity)
		}
		return v, nil
	case FromJSON:
		id, err := jsonField(r.Value, is.Path)
		if err != nil {
			return nil, fmt.Errorf("identity from JSON field %q: %w", is.Path, err)
		}
		return id, nil
	default:
		return nil, fmt.Errorf("identity: unknown source %d", is.From)
	}
}
