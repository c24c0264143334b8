package dedupe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
)

// maxJSONDepth bounds the nesting of a value, as encoding/json does: gjson's validator recurses once per level,
// so a record nested a million deep would otherwise grow a goroutine's stack by about 128 MB.
const maxJSONDepth = 10000

// jsonField returns the string or number at the dotted path in the JSON object data, aliasing data where it can.
// The whole value is validated first (gjson finds a field without validating what it skips, and a malformed
// record must be dead-lettered, not given an identity read from half of it); a path through an array or a scalar
// is an error, not an index into it. A string without escapes is returned as its raw bytes, invalid UTF-8
// included (a decoder would turn each bad byte into U+FFFD, making distinct identities equal); one with escapes is
// decoded by encoding/json, so the identities the changelogs hold stay what they were
// (TestJSONIdentityBytesAreStable).
//
// The returned error wraps ErrNoIdentity when the value is valid JSON without a usable field, and
// ErrMalformedJSON when it is not valid JSON.
func jsonField(data []byte, path string) ([]byte, error) {
	if err := validateJSON(data); err != nil {
		return nil, err
	}
	// gjson reads strings; data is neither written nor kept while it does, and what is returned aliases data as
	// the caller is told (Extract's contract).
	doc := unsafe.String(unsafe.SliceData(data), len(data))
	top := gjson.Parse(doc)
	if !top.IsObject() {
		return nil, fmt.Errorf("%w: the value is %s, not an object", ErrMalformedJSON, kindOf(top.Type, top.Raw))
	}
	field := gjson.Result{}
	if plainPath(path) {
		// One look-up, which descends into each object without scanning to its end: about half the cost of a
		// look-up per segment on a typical event (BenchmarkExtractJSON).
		field = top.Get(path)
	}
	if !field.Exists() {
		var err error
		if field, err = walkPath(top, path); err != nil {
			return nil, err
		}
	}
	if field.Index <= 0 { // a member's value never starts its object; 0 would mean gjson lost its position
		return nil, fmt.Errorf("JSON path %q: gjson gave no position for the field", path)
	}
	raw := data[field.Index : field.Index+len(field.Raw)] // Result.Get adds the parent's Index: a position in doc
	switch field.Type {
	case gjson.Number:
		return raw, nil
	case gjson.String:
		v := raw[1 : len(raw)-1]
		if len(v) == 0 {
			return nil, fmt.Errorf("field %q is an empty string: %w", path, ErrNoIdentity)
		}
		if bytes.IndexByte(v, '\\') < 0 {
			return v, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("%w: string at byte %d: %v", ErrMalformedJSON, field.Index, err)
		}
		return []byte(s), nil
	default:
		return nil, fmt.Errorf("field %q is %s, want a string or a number: %w", path, kindOf(field.Type, field.Raw), ErrNoIdentity)
	}
}

// plainPath reports whether gjson reads path as this package does, a member name per segment: no character gjson
// gives a meaning (wildcards, queries, modifiers, escapes), no empty segment, and no segment after the first that
// is all digits, which gjson would take as an index into an array where this package wants an object.
func plainPath(path string) bool {
	segStart, digits := 0, true
	for i := 0; i <= len(path); i++ {
		if i == len(path) || path[i] == '.' {
			if i == segStart || segStart > 0 && digits {
				return false
			}
			segStart, digits = i+1, true
			continue
		}
		c := path[i]
		if c < '0' || c > '9' {
			digits = false
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ':') {
			return false
		}
	}
	return true
}

// walkPath looks the path up one segment at a time, each in the object the previous one found, so that it can
// say which segment is missing or is not an object.
func walkPath(top gjson.Result, path string) (gjson.Result, error) {
	cur := top
	at := "" // the path of the object cur holds, empty for the top level
	for rest := path; ; {
		seg, more, hasMore := strings.Cut(rest, ".")
		if seg == "" {
			return gjson.Result{}, fmt.Errorf("JSON path %q has an empty segment", path)
		}
		if !cur.IsObject() {
			return gjson.Result{}, fmt.Errorf("field %q is %s, not an object: %w", at, kindOf(cur.Type, cur.Raw), ErrNoIdentity)
		}
		member := cur.Get(gjson.Escape(seg))
		if !member.Exists() {
			if at == "" {
				return gjson.Result{}, fmt.Errorf("field %q missing: no member %q in the top-level object: %w", path, seg, ErrNoIdentity)
			}
			return gjson.Result{}, fmt.Errorf("field %q missing: no member %q in object %q: %w", path, seg, at, ErrNoIdentity)
		}
		if !hasMore {
			return member, nil
		}
		cur, at, rest = member, path[:len(path)-len(more)-1], more
	}
}

// validateJSON reports whether data is one valid JSON value, saying what is wrong where when it is not.
func validateJSON(data []byte) error {
	// Nesting cannot exceed the length, so only a long value needs the depth checked before gjson recurses.
	if len(data) > maxJSONDepth {
		if at := tooDeepAt(data, maxJSONDepth); at >= 0 {
			return fmt.Errorf("%w: nested deeper than %d at byte %d", ErrMalformedJSON, maxJSONDepth, at)
		}
	}
	if gjson.ValidBytes(data) {
		return nil
	}
	// The error path only: encoding/json says what it found and where (its offset counts the bad byte, from 1).
	var syntax *json.SyntaxError
	if err := json.Unmarshal(data, new(json.RawMessage)); errors.As(err, &syntax) {
		return fmt.Errorf("%w: %v (byte %d of %d)", ErrMalformedJSON, err, syntax.Offset, len(data))
	}
	return fmt.Errorf("%w: not a valid JSON value (%d bytes)", ErrMalformedJSON, len(data))
}

// tooDeepAt returns the offset of the first bracket that opens a level deeper than limit, or -1.
func tooDeepAt(data []byte, limit int) int {
	depth, inString := 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			if depth++; depth > limit {
				return i
			}
		case '}', ']':
			depth--
		}
	}
	return -1
}

func kindOf(t gjson.Type, raw string) string {
	switch t {
	case gjson.String:
		return "a string"
	case gjson.Number:
		return "a number"
	case gjson.True, gjson.False:
		return "a boolean"
	case gjson.Null:
		return "null"
	}
	if strings.HasPrefix(raw, "[") {
		return "an array"
	}
	return "an object"
}
