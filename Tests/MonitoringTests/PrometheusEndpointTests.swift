import Foundation
import Testing
import TestSupport
import Training
@testable import Monitoring
#if canImport(Glibc)
import Glibc
#endif

/// The /metrics endpoint on loopback, read by Python's prometheus_client (the reference parser
/// of the text format) as Prometheus would: names, types, labels, and counters that only grow.
@Suite("Prometheus endpoint")
struct PrometheusEndpointTests {
    /// Metrics fed as a run would feed them.
    static func runningMetrics() -> TrainingMetrics {
        let metrics = TrainingMetrics(run: "clip \"quoted\"\\run", rank: 1)
        metrics.stepFinished(step: 1, samples: 16)
        metrics.stepFinished(step: 2, samples: 16)
        metrics.badSamplesSkipped(3)
        metrics.nonFiniteStepSkipped(at: 2)
        metrics.recorded(MetricsRecord(kind: .train, step: 2, epoch: 0.5, values: [
            "loss": 1.25, "contrastive_loss": 1.25, "distill_loss": 0.5, "loss_scale": 65536, "lr": 1e-4,
            "samples_per_second": 800, "data_wait_fraction": 0.125, "grad_norm": .nan, "skipped_samples": 3,
            "peak_host_memory_gib": 1.5]), best: nil)
        metrics.recorded(MetricsRecord(kind: .eval, step: 2, epoch: 0.5, values: [
            "image_to_text_R@1": 0.5, "text_to_image_R@1": 0.25, "clip_val_loss": 1.75, "best_step": 2]),
                             best: BestMetric(name: "image_to_text_R@1", value: 0.5, step: 2))
        return metrics
    }


    @Test func servesEverySeriesInTheTextFormat() throws {
        let metrics = Self.runningMetrics()
        let server = try MetricsServer(host: "127.0.0.1", port: 0) { metrics.exposition() }
        defer { server.close() }
        #expect(server.port > 0)
        let (samples, contentType) = try scrapeWithPrometheusClient(server.url)
        #expect(contentType == "text/plain; version=0.0.4; charset=utf-8")
        let families = Dictionary(samples.map { ($0.family, $0.type) }) { a, _ in a }
        let expected: [String: String] = [
            "cliptune_step": "gauge", "cliptune_epoch": "gauge", "cliptune_samples": "counter",
            "cliptune_nonfinite_steps_skipped": "counter", "cliptune_bad_samples_skipped": "counter",
            "cliptune_learning_rate": "gauge", "cliptune_samples_per_second": "gauge", "cliptune_data_wait_ratio": "gauge",
            "cliptune_loss": "gauge", "cliptune_train_value": "gauge", "cliptune_eval_metric": "gauge", "cliptune_eval_step": "gauge",
            "cliptune_best_metric": "gauge", "cliptune_best_step": "gauge",
            "cliptune_resident_memory_bytes": "gauge", "cliptune_peak_resident_memory_bytes": "gauge",
        ]
        #expect(families == expected)
        // Every series names its run (escaped quotes and backslashes come back intact) and rank.
        #expect(samples.allSatisfy { $0.labels["run"] == "clip \"quoted\"\\run" && $0.labels["rank"] == "1" })
        #expect(samples.value("cliptune_step") == 2)
        #expect(samples.value("cliptune_samples_total") == 32)
        #expect(samples.value("cliptune_bad_samples_skipped_total") == 3)
        #expect(samples.value("cliptune_nonfinite_steps_skipped_total") == 1)
        #expect(samples.value("cliptune_learning_rate") == 1e-4)
        #expect(samples.value("cliptune_data_wait_ratio") == 0.125)
        #expect(samples.value("cliptune_loss", ["term": "loss"]) == 1.25)
        #expect(samples.value("cliptune_loss", ["term": "distill_loss"]) == 0.5)
        #expect(samples.value("cliptune_loss", ["term": "loss_scale"]) == nil)
        #expect(samples.value("cliptune_train_value", ["name": "loss_scale"]) == 65536)
        #expect(samples.value("cliptune_train_value", ["name": "grad_norm"])?.isNaN == true)
        #expect(samples.value("cliptune_train_value", ["name": "peak_host_memory_gib"]) == nil)
        #expect(samples.value("cliptune_eval_metric", ["metric": "image_to_text_R@1"]) == 0.5)
        #expect(samples.value("cliptune_eval_metric", ["metric": "best_step"]) == nil)
        #expect(samples.value("cliptune_best_metric", ["metric": "image_to_text_R@1"]) == 0.5)
        #expect(samples.value("cliptune_best_step") == 2)
        #expect((samples.value("cliptune_resident_memory_bytes") ?? 0) > 1_000_000)
        #expect((samples.value("cliptune_peak_resident_memory_bytes") ?? 0) >= (samples.value("cliptune_resident_memory_bytes") ?? .infinity) * 0.5)
    }

    @Test func countersGrowBetweenScrapes() throws {
        let metrics = Self.runningMetrics()
        let server = try MetricsServer(host: "127.0.0.1", port: 0) { metrics.exposition() }
        defer { server.close() }
        let before = try scrapeWithPrometheusClient(server.url).samples
        metrics.stepFinished(step: 3, samples: 16)
        metrics.badSamplesSkipped(1)
        let after = try scrapeWithPrometheusClient(server.url).samples
        #expect(before.value("cliptune_samples_total") == 32 && after.value("cliptune_samples_total") == 48)
        #expect(after.value("cliptune_bad_samples_skipped_total") == 4)
        #expect(after.value("cliptune_step") == 3)
    }

    @Test func aPortInUseIsAClearErrorAtStart() throws {
        let first = try MetricsServer(host: "127.0.0.1", port: 0) { [] }
        defer { first.close() }
        let error = #expect(throws: MetricsServerError.self) { try MetricsServer(host: "127.0.0.1", port: first.port) { [] } }
        #expect(error?.description.contains("127.0.0.1:\(first.port)") == true)
        #expect(error?.description.contains("in use") == true && error?.description.contains("--metrics-port") == true)
        let noSuchAddress = #expect(throws: MetricsServerError.self) { try MetricsServer(host: "192.0.2.1", port: 0) { [] } }
        #expect(noSuchAddress?.description.contains("--metrics-host") == true)
    }

    @Test func otherPathsAndMethodsAreRefused() throws {
        let server = try MetricsServer(host: "127.0.0.1", port: 0) { Array("cliptune_step 1\n".utf8) }
        defer { server.close() }
        let script = """
        import sys, urllib.request, urllib.error
        base = sys.argv[1].rsplit("/", 1)[0]
        for path, method in [("/metrics?x=1", "GET"), ("/metrics", "HEAD"), ("/", "GET"), ("/metrics", "POST")]:
            try:
                with urllib.request.urlopen(urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None), timeout=10) as r:
                    print(r.status, len(r.read()))
            except urllib.error.HTTPError as e:
                print(e.code, len(e.read()))
        """
        let lines = try runTestPython(script, [server.url]).split(separator: "\n").map(String.init)
        #expect(lines == ["200 16", "200 0", "404 40", "405 30"])
    }

    /// Data parallelism: each rank listens on the recipe's port plus its local rank.
    @Test func eachLocalRankServesTheNextPort() throws {
        let probe = try MetricsServer(host: "127.0.0.1", port: 0) { [] }
        let base = probe.port
        probe.close()
        var recipe = Recipe(name: "ranks", train: .shards("unused"), maxSteps: 1)
        recipe.monitoring.prometheusPort = base - 1
        let monitoring = try RunMonitoring(recipe, rank: 3, localRank: 1)
        defer { monitoring.close() }
        #expect(monitoring.server?.port == base)
        let samples = try scrapeWithPrometheusClient(monitoring.server!.url).samples
        #expect(samples.allSatisfy { $0.labels["rank"] == "3" && $0.labels["run"] == "ranks" })
        recipe.monitoring.prometheusPort = 65_535
        #expect(throws: MetricsServerError.self) { try RunMonitoring(recipe, rank: 1, localRank: 1) }
    }
}
