import Foundation

// The `logging` and `monitoring` sections: what watches a run besides `metrics.jsonl`.

extension Recipe {
    /// Files written beside `metrics.jsonl`.
    public struct LoggingSection: Sendable, Equatable {
        /// Also write every `metrics.jsonl` value as a TensorBoard scalar (`events.out.tfevents.*`).
        public var tensorboard = false

        public init() {}
    }

    /// Watching a run live.
    public struct MonitoringSection: Sendable, Equatable {
        /// Serve Prometheus metrics at `http://host:port/metrics` while training; nil: off. Under
        /// data parallelism rank r serves `port + local rank`; 0 takes any free port (printed).
        public var prometheusPort: Int?
        /// The address the endpoint listens on; loopback unless set.
        public var prometheusHost = "127.0.0.1"

        public init() {}
    }
}

extension Recipe.LoggingSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("tensorboard", &tensorboard, help: "Also write every value of `metrics.jsonl` as a TensorBoard scalar (tags `train/…` and `eval/…`, with the step and wall time) to `events.out.tfevents.*` in the run folder, for `tensorboard --logdir` (open_clip's `--report-to tensorboard`). A resumed run keeps one file: the records after the resumed step are dropped, as in `metrics.jsonl`, so no step appears twice.")
    }
}

extension Recipe.MonitoringSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("prometheus_port", &prometheusPort, RecipeRule(requirement: "must be a TCP port, 0 to 65535 (0: any free port)") { (0...65_535).contains($0) },
                    help: "Serve Prometheus metrics (text format 0.0.4) at `http://prometheus_host:port/metrics` while the run trains: step, samples, loss terms, learning rate, throughput, data wait, skipped steps and samples, evaluation metrics, the best metric, memory; every series labelled with the run name and rank. Under data parallelism each rank serves its own, at `port + local rank`. 0 takes any free port (the run prints it); a port in use stops the run at start. `--metrics-port` sets it. null: off.")
        coder.field("prometheus_host", &prometheusHost, RecipeRule(requirement: "must be an IP address or host name to listen on") { !$0.isEmpty && !$0.contains(where: \.isWhitespace) },
                    help: "The address the metrics endpoint listens on: loopback by default, so nothing outside the machine can read it; \"0.0.0.0\" for a Prometheus server elsewhere. `--metrics-host` sets it.")
    }
}
