// Command kstatus is a test peer of s3-resource-operator: it tells what the
// GitOps tools conclude from one Kubernetes object, so the tests can check our
// status conventions against the real libraries rather than a reading of them.
//
// It reads one object as JSON on stdin and prints one JSON line:
//
//	{"status":"<kstatus verdict>","message":"<kstatus message>"}
//
// With --cel-current (and optionally --cel-failed, --cel-inprogress) it also
// evaluates those expressions the way Flux's Kustomization healthCheckExprs
// are evaluated, through Flux's own evaluator, and adds "cel":"<verdict>".
//
// Flux links kstatus from its fork github.com/fluxcd/cli-utils; the fork's
// v1.3.0 status package differs from sigs.k8s.io/cli-utils v0.37.2's only in
// import paths, so the upstream verdict stands for Flux's too.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/fluxcd/pkg/apis/kustomize"
	fluxcel "github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	CEL     string `json:"cel,omitempty"`
	// CELMessage is the evaluation error behind a "cel":"Unknown".
	CELMessage string `json:"celMessage,omitempty"`
}

func main() {
	current := flag.String("cel-current", "", "Flux healthCheckExprs `current` expression (enables the CEL verdict)")
	failed := flag.String("cel-failed", "", "Flux healthCheckExprs `failed` expression")
	inProgress := flag.String("cel-inprogress", "", "Flux healthCheckExprs `inProgress` expression")
	version := flag.Bool("version", false, "print the versions of the judging libraries and exit")
	flag.Parse()
	if *version {
		printVersions()
		return
	}
	if flag.NArg() != 0 {
		fail("unexpected arguments %q; the object comes on stdin", flag.Args())
	}
	if *current == "" && (*failed != "" || *inProgress != "") {
		fail("--cel-failed and --cel-inprogress need --cel-current, as Flux requires `current`")
	}

	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	// apimachinery's decoder keeps whole numbers as int64, as the API
	// machinery does; encoding/json's float64 would make kstatus's
	// NestedInt64 reject observedGeneration.
	var obj map[string]interface{}
	if err := utiljson.Unmarshal(data, &obj); err != nil {
		fail("decoding the object: %v", err)
	}
	if obj == nil {
		fail("stdin holds no JSON object")
	}
	u := &unstructured.Unstructured{Object: obj}

	// An error is a verdict too: kstatus's status readers report it as
	// Unknown, and Flux and kpt keep waiting on an Unknown object.
	var out verdict
	if res, err := status.Compute(u); err != nil {
		out = verdict{Status: string(status.UnknownStatus), Message: err.Error()}
	} else {
		out = verdict{Status: string(res.Status), Message: res.Message}
	}

	if *current != "" {
		eval, err := fluxcel.NewStatusEvaluator(&kustomize.HealthCheckExpressions{
			Current:    *current,
			Failed:     *failed,
			InProgress: *inProgress,
		})
		if err != nil {
			fail("CEL: %v", err)
		}
		// Flux's status reader turns an evaluation error (such as a field
		// the object lacks) into Unknown, as kstatus's readers do.
		if celRes, err := eval.Evaluate(context.Background(), u); err != nil {
			out.CEL = string(status.UnknownStatus)
			out.CELMessage = err.Error()
		} else {
			out.CEL = string(celRes.Status)
		}
	}

	line, err := json.Marshal(out)
	if err != nil {
		fail("encoding the verdict: %v", err)
	}
	fmt.Println(string(line))
}

// printVersions names the linked libraries, so the smoke check proves the
// binary carries the pinned kstatus rather than whatever was built last.
func printVersions() {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fail("no build information in this binary")
	}
	fmt.Println("kstatus peer of s3-resource-operator")
	for _, dep := range info.Deps {
		switch dep.Path {
		case "sigs.k8s.io/cli-utils", "github.com/fluxcd/pkg/runtime", "github.com/google/cel-go":
			fmt.Printf("%s %s\n", dep.Path, dep.Version)
		}
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(2)
}
