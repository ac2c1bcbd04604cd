// promcheck checks Prometheus alerting rules and PromQL expressions with Prometheus's own
// parsers, for the s3-resource-operator's tests (promtool's `check rules` without the rest of
// promtool, whose dependencies span every service discovery Prometheus has).
//
//	promcheck --version
//	promcheck rules FILE...   rule files, as `promtool check rules` reads them
//	promcheck exprs EXPR...   PromQL expressions (e.g. a dashboard's panel queries)
//
// It prints one JSON object: {"errors": [...], "metrics": {"<expr>": ["<metric name>", ...]}}
// and exits 1 when there is any error.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

const version = "github.com/prometheus/prometheus v0.316.0"

type result struct {
	Errors  []string            `json:"errors"`
	Metrics map[string][]string `json:"metrics"`
}

// add parses expr and records the metric names its selectors name.
func add(p parser.Parser, expr string, out *result) {
	node, err := p.ParseExpr(expr)
	if err != nil {
		out.Errors = append(out.Errors, fmt.Sprintf("%q: %v", expr, err))
		return
	}
	seen := map[string]bool{}
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
			seen[vs.Name] = true
		}
		return nil
	})
	names := []string{}
	for name := range seen {
		names = append(names, name)
	}
	sort.Strings(names)
	out.Metrics[expr] = names
}

func main() {
	args := os.Args[1:]
	if len(args) == 1 && args[0] == "--version" {
		fmt.Println(version)
		return
	}
	if len(args) < 2 || (args[0] != "rules" && args[0] != "exprs") {
		fmt.Fprintln(os.Stderr, "usage: promcheck --version | rules FILE... | exprs EXPR...")
		os.Exit(2)
	}
	p := parser.NewParser(parser.Options{})
	out := result{Errors: []string{}, Metrics: map[string][]string{}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	switch args[0] {
	case "rules":
		for _, file := range args[1:] {
			groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, p, quiet)
			for _, e := range errs {
				out.Errors = append(out.Errors, e.Error())
			}
			if groups == nil {
				continue
			}
			for _, g := range groups.Groups {
				for _, r := range g.Rules {
					add(p, r.Expr, &out)
				}
			}
		}
	case "exprs":
		for _, e := range args[1:] {
			add(p, e, &out)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if len(out.Errors) > 0 {
		os.Exit(1)
	}
}
