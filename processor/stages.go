package processor

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/eosproc/eosproc/internal/pipeline"
	"github.com/eosproc/eosproc/stream"
)

// stageVars names the variable behind each pipeline stage, for messages.
var stageVars = map[string]string{
	pipeline.StageFilter:     "FILTER",
	pipeline.StageMap:        "MAP",
	pipeline.StageKey:        "KEY",
	pipeline.StageHeadersSet: "HEADERS_SET",
	pipeline.StageRoute:      "ROUTE",
}

// hasStages reports whether any transform stage variable is set.
func (c *Config) hasStages() bool {
	return c.Filter != "" || c.Map != "" || c.Key != "" || c.HeadersSet != "" || len(c.HeadersDrop) > 0 ||
		c.Route != "" || len(c.RouteTopics) > 0
}

func (c *Config) pipelineConfig() pipeline.Config {
	cfg := pipeline.Config{
		Filter: c.Filter, Map: c.Map, Key: c.Key, HeadersSet: c.HeadersSet, HeadersDrop: c.HeadersDrop,
		Route: c.Route,
	}
	if c.Route != "" {
		// The output topic is always a valid choice, so a route that singles out a few records needs to list
		// only the topics they go to.
		cfg.RouteTopics = append(slices.Clone(c.RouteTopics), c.OutputTopic)
	}
	return cfg
}

// stageProblems checks the stage variables, compiling every expression, so that a mistake stops the process at
// start (exit code 2) with the variable, the line and the column, rather than dead-lettering every record.
func (c *Config) stageProblems() []string {
	if !c.hasStages() {
		return nil
	}
	var p []string
	bad := func(key, format string, args ...any) { p = append(p, EnvPrefix+key+": "+fmt.Sprintf(format, args...)) }
	if slices.ContainsFunc(c.HeadersDrop, func(h string) bool { return strings.TrimSpace(h) == stream.SourceHeader }) {
		bad("HEADERS_DROP", "%q cannot be dropped: it ties each output to the input it came from", stream.SourceHeader)
	}
	switch {
	case c.Route != "" && len(c.RouteTopics) == 0:
		bad("ROUTE_TOPICS", "not set; PROCESSOR_ROUTE needs the topics it may choose, e.g. orders-eu,orders-us")
	case c.Route == "" && len(c.RouteTopics) > 0:
		bad("ROUTE_TOPICS", "set without PROCESSOR_ROUTE, which chooses among them")
	}
	for _, t := range c.RouteTopics {
		switch t = strings.TrimSpace(t); {
		case slices.Contains(c.InputTopics, t):
			bad("ROUTE_TOPICS", "%q is also an input topic; the processor would read its own output forever", t)
		case t == c.DeadLetterTopic:
			bad("ROUTE_TOPICS", "%q is the dead-letter topic; route records there by failing them instead", t)
		}
	}
	if len(p) > 0 {
		return p
	}
	_, err := pipeline.Compile(c.pipelineConfig())
	var errs pipeline.Errors
	switch {
	case errors.As(err, &errs):
		for _, e := range errs {
			p = append(p, fmt.Sprintf("%s%s: line %d, column %d: %s\n%s", EnvPrefix, stageVars[e.Stage], e.Line, e.Column, e.Message,
				indent(e.Snippet)))
		}
	case err != nil:
		p = append(p, "transform stages: "+err.Error()) // the checks above should have caught it
	}
	return p
}

// indent lines the snippet up under its problem, which ConfigError indents by two spaces.
func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

// stagesTransform is the transform the stage variables configure, or nil when none is set.
func (c *Config) stagesTransform() (stream.Transform, error) {
	if !c.hasStages() {
		return nil, nil
	}
	p, err := pipeline.Compile(c.pipelineConfig())
	if err != nil {
		return nil, fmt.Errorf("compile transform stages: %w", err) // validated by resolve: a bug
	}
	return p.Transform, nil
}
