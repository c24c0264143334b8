// Package pipeline owns the transforms the processor binary offers without code: five stages, each an expression
// (expr-lang/expr) compiled once at start, applied to every record in a fixed order, filter -> map -> key ->
// headers -> route, as one stream.Transform. It is internal because its only user is the processor's
// configuration; a program that needs more than expressions writes its own stream.Transform.
//
// The order is fixed rather than configurable because each stage's input is the previous one's output and every
// useful order is this one: filtering first spares the other stages the records that are dropped anyway, the key
// and the headers are usually computed from the reshaped value, and the route sees the final record.
package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"

	"github.com/eosproc/eosproc/stream"
)

// Config holds one expression per stage; an empty one skips its stage.
type Config struct {
	Filter      string   // keeps the record when true; false drops it (no output, its offset still committed)
	Map         string   // the new value, written as JSON
	Key         string   // the new key: a string, a number or a boolean (as text), or nil for no key
	HeadersSet  string   // a map of header name to value; a nil value removes the header
	HeadersDrop []string // header names to remove
	Route       string   // the output topic's name, one of RouteTopics
	RouteTopics []string // every topic Route may choose
}

// Stage names, as ExprError reports them.
const (
	StageFilter     = "filter"
	StageMap        = "map"
	StageKey        = "key"
	StageHeadersSet = "headers"
	StageRoute      = "route"
)

// Where a record failed before any stage ran, and the classes of the errors Transform returns (as
// stream.RecordError): a value the expressions cannot read, an expression that failed on the record, and one
// that yielded what its stage cannot use.
const (
	StageDecode     = "decode"
	ClassBadInput   = "bad_input"
	ClassExpression = "expression"
	ClassBadResult  = "bad_result"
)

// Stages are the stages a record can fail at, as Transform's errors name them.
var Stages = []string{StageDecode, StageFilter, StageMap, StageKey, StageHeadersSet, StageRoute}

// ExprError is an expression that does not compile.
type ExprError struct {
	Stage   string // one of the Stage constants
	Line    int    // 1-based
	Column  int    // 1-based, in characters
	Message string
	Snippet string // the offending line and, below it, a caret under the position; both indented
}

func (e *ExprError) Error() string {
	return fmt.Sprintf("%s: line %d, column %d: %s", e.Stage, e.Line, e.Column, e.Message)
}

// Errors are all the expressions that did not compile, so a user fixes them in one go.
type Errors []*ExprError

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// env is what an expression sees of the record. A struct rather than a map: expr resolves the names at compile
// time, so a misspelt name is an error at start instead of a nil at run time, and no map is built per record.
type env struct {
	Value     any               `expr:"value"` // the value parsed as JSON; after the map stage, the new value
	Key       string            `expr:"key"`
	Headers   map[string]string `expr:"headers"` // the last value of each header name
	Topic     string            `expr:"topic"`
	Partition int               `expr:"partition"`
	Offset    int               `expr:"offset"`
	Timestamp time.Time         `expr:"timestamp"`
}

// Pipeline is the compiled stages.
type Pipeline struct {
	filter, mapv, key, headers, route *vm.Program

	drop        map[string]bool
	routeTopics map[string]bool
	allowed     string // routeTopics for messages

	// What the expressions read, so a record's value is parsed, and its headers gathered into a map, only when
	// some stage reads them: a pipeline that only re-keys by the Kafka key never pays for JSON.
	needValue, needHeaders bool
	// Whether the route reads the headers, which the headers stage may have changed.
	routeHeaders bool

	vms sync.Pool // *vm.VM: reusing one spares its stack allocations on every run
}

// Compile compiles the stages. Expressions that do not compile are returned together as Errors; the other
// errors are about the rest of the configuration.
func Compile(cfg Config) (*Pipeline, error) {
	p := &Pipeline{drop: map[string]bool{}, routeTopics: map[string]bool{}}
	p.vms.New = func() any { return &vm.VM{} }
	for _, h := range cfg.HeadersDrop {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if h == stream.SourceHeader {
			return nil, fmt.Errorf("header %q cannot be dropped: it ties each output to its input", h)
		}
		p.drop[h] = true
	}
	for _, t := range cfg.RouteTopics {
		if t = strings.TrimSpace(t); t != "" {
			p.routeTopics[t] = true
		}
	}
	if cfg.Route != "" && len(p.routeTopics) == 0 {
		return nil, errors.New("a route needs the list of topics it may choose")
	}
	p.allowed = strings.Join(slices.Sorted(maps.Keys(p.routeTopics)), ",")

	var errs Errors
	compile := func(stage, src string, opts ...expr.Option) *vm.Program {
		if strings.TrimSpace(src) == "" {
			return nil
		}
		opts = append([]expr.Option{
			expr.Env(env{}),
			// The committed output must depend only on the input: a batch that is aborted and transformed again
			// has to produce the same records, so the clock is not available to expressions.
			expr.DisableBuiltin("now"),
		}, opts...)
		prog, err := expr.Compile(src, opts...)
		if err != nil {
			errs = append(errs, exprError(stage, src, err))
			return nil
		}
		node := prog.Node()
		var names identifiers
		ast.Walk(&node, &names)
		// $env reaches every name (e.g. $env["value"]) without naming it.
		all := names["$env"]
		p.needValue = p.needValue || names["value"] || all
		p.needHeaders = p.needHeaders || names["headers"] || all
		if stage == StageRoute {
			p.routeHeaders = names["headers"] || all
		}
		return prog
	}
	p.filter = compile(StageFilter, cfg.Filter, expr.AsBool())
	p.mapv = compile(StageMap, cfg.Map)
	p.key = compile(StageKey, cfg.Key)
	p.headers = compile(StageHeadersSet, cfg.HeadersSet)
	p.route = compile(StageRoute, cfg.Route)
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

func exprError(stage, src string, err error) *ExprError {
	// An error without a position is about the whole expression (its result type): it is pointed at its start.
	e := &ExprError{Stage: stage, Line: 1, Column: 1, Message: err.Error()}
	var fe *file.Error
	if errors.As(err, &fe) {
		e.Line, e.Column, e.Message = max(fe.Line, 1), fe.Column+1, fe.Message
	}
	if lines := strings.Split(src, "\n"); e.Line <= len(lines) {
		line := []rune(strings.ReplaceAll(lines[e.Line-1], "\t", " "))
		e.Snippet = "    " + string(line) + "\n    " + strings.Repeat(" ", min(e.Column-1, len(line))) + "^"
	}
	return e
}

// identifiers collects the top-level names an expression reads.
type identifiers map[string]bool

func (ids *identifiers) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok {
		if *ids == nil {
			*ids = identifiers{}
		}
		(*ids)[id.Value] = true
	}
}

// Transform applies the stages to one record. Its errors name the stage and say why; the processor sends the
// record to the dead-letter topic with them.
func (p *Pipeline) Transform(_ context.Context, in stream.Record) ([]stream.Record, error) {
	e := &env{Key: string(in.Key), Topic: in.Topic, Partition: int(in.Partition), Offset: int(in.Offset), Timestamp: in.Timestamp}
	if p.needValue {
		v, err := decodeJSON(in.Value)
		if err != nil {
			return nil, &stream.RecordError{Stage: StageDecode, Class: ClassBadInput, Err: fmt.Errorf("value is not JSON: %w", err)}
		}
		e.Value = v
	}
	if p.needHeaders {
		e.Headers = headerMap(in.Headers)
	}
	machine := p.vms.Get().(*vm.VM)
	defer p.vms.Put(machine)

	if p.filter != nil {
		keep, err := machine.Run(p.filter, e)
		if err != nil {
			return nil, runError(StageFilter, err)
		}
		if keep != true {
			return nil, nil
		}
	}
	out := stream.Record{Key: in.Key, Value: in.Value, Timestamp: in.Timestamp}
	if p.mapv != nil {
		v, err := machine.Run(p.mapv, e)
		if err != nil {
			return nil, runError(StageMap, err)
		}
		if out.Value, err = encodeJSON(v); err != nil {
			return nil, badResult(StageMap, fmt.Errorf("%s: the new value cannot be written as JSON: %w", StageMap, err))
		}
		e.Value = v
	}
	if p.key != nil {
		v, err := machine.Run(p.key, e)
		if err != nil {
			return nil, runError(StageKey, err)
		}
		if out.Key, err = scalarBytes(v); err != nil {
			return nil, badResult(StageKey, fmt.Errorf("%s: %w", StageKey, err))
		}
		e.Key = string(out.Key)
	}
	set, err := p.headersToSet(machine, e)
	if err != nil {
		return nil, err
	}
	headers, err := p.outputHeaders(in, set)
	if err != nil {
		return nil, err
	}
	out.Headers = headers
	if p.route != nil {
		if p.routeHeaders && p.headers != nil {
			e.Headers = headerMap(out.Headers)
		}
		v, err := machine.Run(p.route, e)
		if err != nil {
			return nil, runError(StageRoute, err)
		}
		topic, ok := v.(string)
		if !ok || !p.routeTopics[topic] {
			return nil, badResult(StageRoute, fmt.Errorf("%s: yields %s, which is not one of the allowed topics (%s)", StageRoute, describe(v), p.allowed))
		}
		out.Topic = topic
	}
	return []stream.Record{out}, nil
}

// headersToSet runs the headers stage, if any: the headers it sets, by name.
func (p *Pipeline) headersToSet(machine *vm.VM, e *env) (map[string]any, error) {
	if p.headers == nil {
		return nil, nil
	}
	v, err := machine.Run(p.headers, e)
	if err != nil {
		return nil, runError(StageHeadersSet, err)
	}
	m, ok := v.(map[string]any)
	if !ok && v != nil {
		return nil, badResult(StageHeadersSet, fmt.Errorf("%s: yields %s; want a map of header name to value, e.g. {\"region\": value.region}", StageHeadersSet, typeName(v)))
	}
	if _, ok := m[stream.SourceHeader]; ok {
		return nil, badResult(StageHeadersSet, fmt.Errorf("%s: header %q cannot be set: it ties each output to its input", StageHeadersSet, stream.SourceHeader))
	}
	return m, nil
}

// outputHeaders keeps the input's headers less the dropped and the replaced ones, adds the set ones in name
// order (a map has none, and the same input must give the same output), and ends with the source header. An
// incoming source header, written by an upstream processor, is replaced: the source is always this input.
func (p *Pipeline) outputHeaders(in stream.Record, set map[string]any) ([]stream.Header, error) {
	headers := make([]stream.Header, 0, len(in.Headers)+len(set)+1)
	for _, h := range in.Headers {
		if _, replaced := set[h.Key]; replaced || p.drop[h.Key] || h.Key == stream.SourceHeader {
			continue
		}
		headers = append(headers, h)
	}
	if len(set) > 0 {
		for _, name := range slices.Sorted(maps.Keys(set)) {
			v := set[name]
			if v == nil {
				continue
			}
			b, err := scalarBytes(v)
			if err != nil {
				return nil, badResult(StageHeadersSet, fmt.Errorf("%s: header %q: %w", StageHeadersSet, name, err))
			}
			headers = append(headers, stream.Header{Key: name, Value: b})
		}
	}
	return append(headers, stream.Header{Key: stream.SourceHeader, Value: []byte(in.Source())}), nil
}

func runError(stage string, err error) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		err = fmt.Errorf("%s: line %d, column %d: %s", stage, max(fe.Line, 1), fe.Column+1, fe.Message)
	} else {
		err = fmt.Errorf("%s: %w", stage, err)
	}
	return &stream.RecordError{Stage: stage, Class: ClassExpression, Err: err}
}

// badResult is an expression that ran but yielded what its stage cannot use.
func badResult(stage string, err error) error {
	return &stream.RecordError{Stage: stage, Class: ClassBadResult, Err: err}
}

func headerMap(hs []stream.Header) map[string]string {
	m := make(map[string]string, len(hs))
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	return m
}

func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// A value is data for another program, not HTML: "<" stays "<".
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// scalarBytes writes a key or header value: strings as they are, numbers and booleans as their text.
func scalarBytes(v any) ([]byte, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []byte(t), nil
	case []byte:
		return t, nil
	case bool:
		return strconv.AppendBool(nil, t), nil
	case int:
		return strconv.AppendInt(nil, int64(t), 10), nil
	case int64:
		return strconv.AppendInt(nil, t, 10), nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return nil, fmt.Errorf("yields %v; want a finite number", t)
		}
		return strconv.AppendFloat(nil, t, 'f', -1, 64), nil
	}
	return nil, fmt.Errorf("yields %s; want a string, a number, a boolean or nil", typeName(v))
}

func describe(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return typeName(v)
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case map[string]any:
		return "a map"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, float64:
		return "a number"
	}
	return fmt.Sprintf("a %T", v)
}
