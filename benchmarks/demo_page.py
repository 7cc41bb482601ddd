"""The demo page's cost over a direct SavedModel call, and its screenshot.

    python -m benchmarks.demo_page [--saved_model DIR] [--calls 30] [--warmup 3]
        [--screenshot docs/images/demo_page.png] [--workdir runs/bench/demo]

Serves `python -m realm_tf.serving.demo`'s page (its HTTP server, in a thread of this
process) over a QA export, and times one question at a time, in turns
(`benchmarks.common.timed_in_turns`): through the page's JSON endpoint (POST /api/answer,
as a script or the page's own JavaScript asks it: HTTP, JSON both ways, the request's
checks) against the same export's `serving_default` called directly in this process, the
baseline. Reported: p50/p99 of each, the page's p50 as a ratio to the direct call's, and
whether both gave the same answers. The export is --saved_model (default: the quickstart's,
runs/quickstart/saved_models/realm_qa/<newest>, when there is one), else the tiny exact
export `benchmarks.serving_latency` builds, under --workdir.

--screenshot PATH also opens the page in headless Chromium (Debian's chromium and
chromium-driver), asks --question by typing it and pressing Ask, and saves the page
with its answer as a PNG: the README's screenshot comes from this run. Writes
benchmarks/results/demo_page.json.
"""

import argparse
import json
import pathlib
import urllib.request
from typing import Dict, Optional, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from benchmarks import common

RESULTS = common.RESULTS_DIR / "demo_page.json"
QUICKSTART_EXPORTS = common.REPO / "runs" / "quickstart" / "saved_models" / "realm_qa"


def _default_export() -> Optional[pathlib.Path]:
    versions = sorted((p for p in QUICKSTART_EXPORTS.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
    return versions[-1] if versions else None


def _export(args) -> pathlib.Path:
    export = args.saved_model or _default_export()
    if export:
        return export
    from benchmarks import serving_latency

    built = serving_latency.prepare_model(serving_latency.build_arg_parser().parse_args(
        [f"--workdir={args.workdir}"]))
    return pathlib.Path(built["exports"]["exact"])


def _ask_json(url: str):
    def ask(question: str) -> str:
        request = urllib.request.Request(url + "api/answer", data=json.dumps({"question": question}).encode("utf-8"),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.loads(response.read())["answer"]
    return ask


def screenshot(url: str, question: str, path: pathlib.Path) -> Dict:
    """Asks `question` on the page in headless Chromium and saves the page as a PNG at `path`."""
    from benchmarks.browser import Browser

    with Browser(window=(1100, 900)) as browser:
        browser.get(url)
        browser.type("#question", question)
        browser.click("#submit")
        browser.wait_for("#result", timeout=300)
        marks = browser.find_all("li.passage.source mark.answer")
        shown = {"question": question, "answer": browser.find("#answer").text,
                 "highlighted": marks[0].text if marks else None,
                 "passages": len(browser.find_all("li.passage")), "meta": browser.find("#answer-meta").text}
        height = int(browser.execute("return document.documentElement.scrollHeight;"))
        browser.command("POST", "/window/rect", {"width": 1100, "height": min(height + 140, 4000)})
        path.parent.mkdir(parents=True, exist_ok=True)
        browser.screenshot(str(path))
    shown["path"] = str(path)
    return shown


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo_page", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saved_model", type=pathlib.Path, help="a QA export (default: the quickstart's, else a tiny "
                                                                 "one built under --workdir)")
    parser.add_argument("--calls", type=int, default=30, help="one-question calls timed per system "
                                                              "(default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default: %(default)s)")
    parser.add_argument("--questions", type=pathlib.Path, default=common.QA_DIR / "qa_dev.jsonl",
                        help="squad_open JSONL whose questions are asked (default: qa_dev)")
    parser.add_argument("--screenshot", type=pathlib.Path, help="also save the page answering --question here (PNG)")
    parser.add_argument("--question", default="When was Nikola Tesla born?",
                        help="the screenshot's question (default: %(default)r)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/bench/demo"))
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """Runs the benchmark; returns the results written to --output."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    common.check_at_least(parser, args, {"calls": 1, "warmup": 0})
    if args.saved_model and not args.saved_model.is_dir():
        parser.error(f"--saved_model {args.saved_model}: no such directory")
    questions = common.read_questions(parser, args.questions)[:args.warmup + args.calls]
    if len(questions) < args.warmup + args.calls:
        parser.error(f"--questions {args.questions}: {len(questions)} questions, fewer than --warmup + --calls")

    from realm_tf.serving import demo

    machine = common.machine_info()
    export = _export(args)
    answerer = demo.SavedModelAnswerer(str(export))
    with demo.serving_in_background(answerer) as url:
        calls = {"direct": lambda q: answerer.answer([q])[0]["answer"], "page": _ask_json(url)}
        seconds, answers = common.timed_in_turns(calls, questions, warmup=args.warmup)
        shown = screenshot(url, args.question, args.screenshot) if args.screenshot else None
    systems = {name: common.latency_ms(seconds[name]) for name in calls}
    results = {
        "benchmark": "demo_page",
        "command": common.command_line("benchmarks.demo_page", argv),
        "export": str(export),
        "retrieval": answerer.description["retrieval"],
        "baseline": "direct",
        "calls": args.calls, "warmup": args.warmup,
        "systems": {
            "direct": {**systems["direct"], "what": "the export's serving_default called in this process"},
            "page": {**systems["page"], "what": "POST /api/answer of realm_tf.serving.demo's server (a thread of "
                                                "this process), over HTTP on 127.0.0.1"},
        },
        "page_p50_ratio_to_direct": common.ratio(systems["page"]["p50_ms"], systems["direct"]["p50_ms"]),
        "page_p50_overhead_ms": round(systems["page"]["p50_ms"] - systems["direct"]["p50_ms"], 3),
        "same_answers": answers["page"] == answers["direct"],
        "screenshot": shown,
        "machine": machine,
    }
    print(f"p50 direct {systems['direct']['p50_ms']:.1f} ms, through the page {systems['page']['p50_ms']:.1f} ms "
          f"({results['page_p50_ratio_to_direct']:.3f}x)", flush=True)
    return common.write_results(args.output, results)


if __name__ == "__main__":
    main()
