package dedupe

import (
	"encoding/json"
	"fmt"
	"strings"
)

// maxJSONDepth bounds the nesting the scanner follows while skipping a value, as encoding/json does, so that a
// hostile value cannot exhaust the stack.
const maxJSONDepth = 10000

// jsonField returns the string or number at the dotted path in the JSON object data. A string without escapes
// is returned as its raw bytes, invalid UTF-8 included (a decoder would turn each bad byte into U+FFFD, making
// distinct identities equal). It walks the bytes once,
// allocating nothing unless the field or a member name on the path holds escapes: measured on a 300-byte order,
// it is several times faster than decoding into a map (BenchmarkExtractJSON).
//
// Why not tidwall/gjson: it finds a field without validating what it skips, and a malformed record must be
// dead-lettered, not given an identity read from half of it; validated first (gjson.ValidBytes), it took 738 ns
// to this scanner's 628 on a 390-byte order (medians of 5), close enough to prefer a library, but its validator
// recurses without a depth limit: one record nested a million deep grew a goroutine's stack to 128 MB, where this
// scanner stops at maxJSONDepth. It also says only "not valid", where a dead letter here says what was found at
// which byte.
//
// The returned error wraps ErrNoIdentity when the value is valid JSON without a usable field, and
// ErrMalformedJSON when it is not valid JSON.
func jsonField(data []byte, path string) ([]byte, error) {
	s := jsonScanner{data: data}
	s.ws()
	rest := path
	depth := 0
	var id []byte
	for {
		seg, more, hasMore := strings.Cut(rest, ".")
		if seg == "" {
			return nil, fmt.Errorf("JSON path %q has an empty segment", path)
		}
		at := path[:len(path)-len(rest)]
		at = strings.TrimSuffix(at, ".")
		if err := s.enterObject(at); err != nil {
			return nil, err
		}
		depth++
		found, err := s.findMember(seg)
		if err != nil {
			return nil, err
		}
		if !found {
			if at == "" {
				return nil, fmt.Errorf("field %q missing: no member %q in the top-level object: %w", path, seg, ErrNoIdentity)
			}
			return nil, fmt.Errorf("field %q missing: no member %q in object %q: %w", path, seg, at, ErrNoIdentity)
		}
		if !hasMore {
			id, err = s.scalar(path)
			if err != nil {
				return nil, err
			}
			break
		}
		rest = more
	}
	// Finish the objects the path entered and check nothing follows, so malformed JSON after the field is an
	// error too, as it would be for a decoder.
	for ; depth > 0; depth-- {
		if err := s.finishObject(); err != nil {
			return nil, err
		}
	}
	s.ws()
	if s.i != len(s.data) {
		return nil, s.malformed("data after the top-level value")
	}
	return id, nil
}

type jsonScanner struct {
	data []byte
	i    int
}

func (s *jsonScanner) malformed(what string) error {
	if s.i >= len(s.data) {
		return fmt.Errorf("%w: unexpected end of value (%d bytes) looking for %s", ErrMalformedJSON, len(s.data), what)
	}
	return fmt.Errorf("%w: unexpected %q at byte %d looking for %s", ErrMalformedJSON, s.data[s.i], s.i, what)
}

func (s *jsonScanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// enterObject consumes the '{' of the object at path at (empty for the top level), or says what is there instead.
func (s *jsonScanner) enterObject(at string) error {
	if s.i < len(s.data) && s.data[s.i] == '{' {
		s.i++
		return nil
	}
	if at == "" {
		if s.i < len(s.data) && isValueStart(s.data[s.i]) {
			// Valid JSON perhaps, but not an object: there is no field to read.
			return fmt.Errorf("%w: the value is %s, not an object", ErrMalformedJSON, kindOf(s.data[s.i]))
		}
		return s.malformed("an object")
	}
	if s.i < len(s.data) && isValueStart(s.data[s.i]) {
		return fmt.Errorf("field %q is %s, not an object: %w", at, kindOf(s.data[s.i]), ErrNoIdentity)
	}
	return s.malformed("a value")
}

// findMember scans the members of the object just entered until one is named name, and leaves the scanner at
// its value. It returns false, with the scanner past the closing '}', when there is none.
func (s *jsonScanner) findMember(name string) (bool, error) {
	s.ws()
	if s.i < len(s.data) && s.data[s.i] == '}' {
		s.i++
		return false, nil
	}
	for {
		s.ws()
		start, end, escaped, err := s.str()
		if err != nil {
			return false, err
		}
		s.ws()
		if s.i >= len(s.data) || s.data[s.i] != ':' {
			return false, s.malformed("':' after a member name")
		}
		s.i++
		s.ws()
		if nameEquals(s.data[start:end], escaped, name) {
			return true, nil
		}
		if err := s.skip(0); err != nil {
			return false, err
		}
		s.ws()
		if s.i < len(s.data) {
			switch s.data[s.i] {
			case ',':
				s.i++
				continue
			case '}':
				s.i++
				return false, nil
			}
		}
		return false, s.malformed("',' or '}' in an object")
	}
}

// finishObject skips the remaining members of an object whose member value was just read, and its '}'.
func (s *jsonScanner) finishObject() error {
	for {
		s.ws()
		if s.i < len(s.data) {
			switch s.data[s.i] {
			case '}':
				s.i++
				return nil
			case ',':
				s.i++
				s.ws()
				if _, _, _, err := s.str(); err != nil {
					return err
				}
				s.ws()
				if s.i >= len(s.data) || s.data[s.i] != ':' {
					return s.malformed("':' after a member name")
				}
				s.i++
				s.ws()
				if err := s.skip(0); err != nil {
					return err
				}
				continue
			}
		}
		return s.malformed("',' or '}' in an object")
	}
}

// scalar reads the value at the scanner as an identity: a string's decoded text or a number's literal text.
func (s *jsonScanner) scalar(path string) ([]byte, error) {
	if s.i >= len(s.data) {
		return nil, s.malformed("a value")
	}
	switch c := s.data[s.i]; {
	case c == '"':
		start, end, escaped, err := s.str()
		if err != nil {
			return nil, err
		}
		v := s.data[start:end]
		if escaped {
			var u string
			if err := json.Unmarshal(s.data[start-1:end+1], &u); err != nil {
				return nil, fmt.Errorf("%w: string at byte %d: %v", ErrMalformedJSON, start-1, err)
			}
			v = []byte(u)
		}
		if len(v) == 0 {
			return nil, fmt.Errorf("field %q is an empty string: %w", path, ErrNoIdentity)
		}
		return v, nil
	case c == '-' || c >= '0' && c <= '9':
		start := s.i
		if err := s.number(); err != nil {
			return nil, err
		}
		return s.data[start:s.i], nil
	case isValueStart(c):
		kind := kindOf(c)
		if err := s.skip(0); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("field %q is %s, want a string or a number: %w", path, kind, ErrNoIdentity)
	default:
		return nil, s.malformed("a value")
	}
}

// str consumes a string at the scanner and returns the bounds of its raw contents (between the quotes) and
// whether it holds escapes.
func (s *jsonScanner) str() (start, end int, escaped bool, err error) {
	if s.i >= len(s.data) || s.data[s.i] != '"' {
		return 0, 0, false, s.malformed("a string")
	}
	s.i++
	start = s.i
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			end = s.i
			s.i++
			return start, end, escaped, nil
		case c == '\\':
			escaped = true
			s.i++
			if s.i >= len(s.data) {
				return 0, 0, false, s.malformed("an escape")
			}
			switch s.data[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				s.i++
				for range 4 {
					if s.i >= len(s.data) || !isHex(s.data[s.i]) {
						return 0, 0, false, s.malformed("4 hex digits in a \\u escape")
					}
					s.i++
				}
			default:
				return 0, 0, false, s.malformed("an escape")
			}
		case c < 0x20:
			return 0, 0, false, s.malformed("a string character (control characters must be escaped)")
		default:
			s.i++
		}
	}
	return 0, 0, false, s.malformed("the end of a string")
}

// number consumes a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScanner) number() error {
	d := s.data
	if s.i < len(d) && d[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(d) && d[s.i] == '0':
		s.i++
	case s.i < len(d) && d[s.i] >= '1' && d[s.i] <= '9':
		s.digits()
	default:
		return s.malformed("a digit")
	}
	if s.i < len(d) && d[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return s.malformed("a digit after '.'")
		}
	}
	if s.i < len(d) && (d[s.i] == 'e' || d[s.i] == 'E') {
		s.i++
		if s.i < len(d) && (d[s.i] == '+' || d[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return s.malformed("a digit in an exponent")
		}
	}
	return nil
}

func (s *jsonScanner) digits() int {
	n := 0
	for s.i < len(s.data) && s.data[s.i] >= '0' && s.data[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

// skip consumes one value of any kind, checking it is well formed.
func (s *jsonScanner) skip(depth int) error {
	if s.i >= len(s.data) {
		return s.malformed("a value")
	}
	switch c := s.data[s.i]; c {
	case '"':
		_, _, _, err := s.str()
		return err
	case '{', '[':
		if depth >= maxJSONDepth {
			return fmt.Errorf("%w: nested deeper than %d at byte %d", ErrMalformedJSON, maxJSONDepth, s.i)
		}
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		s.i++
		s.ws()
		if s.i < len(s.data) && s.data[s.i] == closer {
			s.i++
			return nil
		}
		for {
			s.ws()
			if c == '{' {
				if _, _, _, err := s.str(); err != nil {
					return err
				}
				s.ws()
				if s.i >= len(s.data) || s.data[s.i] != ':' {
					return s.malformed("':' after a member name")
				}
				s.i++
				s.ws()
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			s.ws()
			if s.i < len(s.data) {
				switch s.data[s.i] {
				case ',':
					s.i++
					continue
				case closer:
					s.i++
					return nil
				}
			}
			return s.malformed(fmt.Sprintf("',' or '%c'", closer))
		}
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return s.number()
	default:
		return s.malformed("a value")
	}
}

func (s *jsonScanner) literal(lit string) error {
	if len(s.data)-s.i < len(lit) || string(s.data[s.i:s.i+len(lit)]) != lit {
		return s.malformed(lit)
	}
	s.i += len(lit)
	return nil
}

// nameEquals compares a member name's raw contents to name, decoding escapes when there are any.
func nameEquals(raw []byte, escaped bool, name string) bool {
	if !escaped {
		return string(raw) == name
	}
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	var u string
	if err := json.Unmarshal(quoted, &u); err != nil {
		return false
	}
	return u == name
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isValueStart(c byte) bool {
	switch c {
	case '{', '[', '"', 't', 'f', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

func kindOf(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
