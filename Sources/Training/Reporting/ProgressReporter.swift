import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The training loop's console output.
///
/// On a terminal: one status line redrawn in place (bar, step, ETA, loss, throughput, lr), at most
/// ten times a second and never wider than the terminal, with `message`s scrolling above it.
/// Elsewhere (a log file, CI, `nohup`): a plain line every `logEvery` steps and no control
/// characters, so the log stays greppable.
///
/// Not thread-safe: call it from the training loop only.
public final class ProgressReporter {
    public let totalSteps: Int?
    public let isTerminal: Bool
    public let logEvery: Int

    private let startStep: Int
    private let fixedWidth: Int?
    private let now: () -> Double
    private let output: (String) -> Void
    private let startTime: Double
    /// The latest update, drawn or not (throttling and `logEvery` skip some).
    private var latest: Status?
    private var latestShown = false
    private var barOnScreen = false
    private var lastDrawTime = -Double.infinity

    static let minimumRedrawInterval = 0.1
    static let defaultWidth = 100

    private struct Status {
        var step: Int
        var epoch: Double
        var loss: Double
        var samplesPerSecond: Double
        var lr: Double
        var extra: [String: Double]
    }

    /// - Parameters:
    ///   - totalSteps: the run's length; nil shows no bar, percentage or ETA.
    ///   - isTerminal: redraw in place; by default when stderr is a terminal.
    ///   - logEvery: in plain mode, print every this many steps (and the last step).
    ///   - startStep: the step a resumed run starts from, so the ETA counts only this session's steps.
    ///   - terminalWidth: fixed columns; nil asks the terminal on each redraw (it may be resized).
    ///   - now: seconds on a monotonic clock (inject one in tests).
    ///   - output: where text goes; stderr by default so stdout stays clean for results.
    public init(totalSteps: Int?, isTerminal: Bool = isatty(STDERR_FILENO) != 0, logEvery: Int = 10,
                startStep: Int = 0, terminalWidth: Int? = nil,
                now: @escaping () -> Double = ProgressReporter.monotonicSeconds,
                output: @escaping (String) -> Void = ProgressReporter.writeToStandardError) {
        self.totalSteps = totalSteps
        self.isTerminal = isTerminal
        self.logEvery = max(1, logEvery)
        self.startStep = startStep
        self.fixedWidth = terminalWidth
        self.now = now
        self.output = output
        self.startTime = now()
    }

    /// Reports the state after `step`. Cheap enough to call every step: throttled on a terminal,
    /// filtered by `logEvery` otherwise.
    public func update(step: Int, epoch: Double, loss: Double, samplesPerSecond: Double, lr: Double,
                       extra: [String: Double] = [:]) {
        latest = Status(step: step, epoch: epoch, loss: loss, samplesPerSecond: samplesPerSecond, lr: lr, extra: extra)
        latestShown = false
        let isLast = totalSteps == step
        if isTerminal {
            if isLast || now() - lastDrawTime >= Self.minimumRedrawInterval { drawBar() }
        } else if step % logEvery == 0 || isLast {
            printPlain()
        }
    }

    /// Prints `text` on its own line above the status line, which is then redrawn below it.
    public func message(_ text: String) {
        guard isTerminal, barOnScreen else { return output(text + "\n") }
        output("\r\u{1B}[K" + text + "\n")
        drawBar()
    }

    /// Shows the final state and ends the status line, so later output starts on a fresh line.
    /// Calling it again without a new `update` does nothing.
    public func finish() {
        if isTerminal {
            if latest != nil, !latestShown || barOnScreen { drawBar() }
            if barOnScreen { output("\n") }
            barOnScreen = false
        } else if latest != nil, !latestShown {
            printPlain()
        }
        latest = nil
    }

    // MARK: - Lines

    private func drawBar() {
        guard let status = latest else { return }
        let time = now()
        output("\r" + terminalLine(status, time: time, width: fixedWidth ?? Self.terminalColumns()) + "\u{1B}[K")
        lastDrawTime = time
        barOnScreen = true
        latestShown = true
    }

    private func printPlain() {
        guard let status = latest else { return }
        output(plainLine(status, time: now()) + "\n")
        latestShown = true
    }

    /// Fields from most to least important; narrow terminals lose the tail first.
    private func fields(_ status: Status, time: Double) -> (progress: [String], metrics: [String]) {
        var progress: [String]
        if let total = totalSteps, total > 0 {
            let percent = 100 * Double(status.step) / Double(total)
            progress = ["\(status.step)/\(total)", String(format: "%.1f%%", percent)]
            progress.append("ETA " + (eta(step: status.step, time: time).map(Self.duration) ?? "-:--:--"))
        } else {
            progress = ["step \(status.step)", "elapsed " + Self.duration(time - startTime)]
        }
        var metrics = [String(format: "loss %.4f", status.loss),
                       String(format: "%.1f samples/s", status.samplesPerSecond),
                       String(format: "lr %.2e", status.lr)]
        if status.epoch.isFinite { metrics.append(String(format: "epoch %.2f", status.epoch)) }
        metrics += status.extra.sorted { $0.key < $1.key }.map { "\($0.key) " + String(format: "%.4g", $0.value) }
        return (progress, metrics)
    }

    /// `[#####.....] 10/100 10.0% ETA 0:01:30  loss 0.4123  812.3 samples/s  lr 1.00e-05 ...`,
    /// at most `width - 1` characters (writing the last column makes some terminals wrap).
    private func terminalLine(_ status: Status, time: Double, width: Int) -> String {
        let available = max(20, width) - 1
        let (progress, allMetrics) = fields(status, time: time)
        // The bar's size depends on the width only, so it does not jump as the numbers change.
        var bar = ""
        if let total = totalSteps, total > 0 {
            let cells = min(30, max(10, available / 4))
            let filled = min(cells, max(0, Int(Double(cells) * Double(status.step) / Double(total))))
            bar = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: cells - filled) + "] "
        }
        var metrics = allMetrics
        func text() -> String { ([progress.joined(separator: " ")] + metrics).joined(separator: "  ") }
        while !metrics.isEmpty, bar.count + text().count > available { metrics.removeLast() }
        if bar.count + text().count > available { bar = "" }   // very narrow: numbers beat the bar
        return String((bar + text()).prefix(available))
    }

    private func plainLine(_ status: Status, time: Double) -> String {
        var (progress, metrics) = fields(status, time: time)
        if totalSteps.map({ $0 > 0 }) ?? false {
            progress = ["step \(progress[0]) (\(progress[1]))", "elapsed " + Self.duration(time - startTime), progress[2]]
        }
        return (progress + metrics).joined(separator: "  ")
    }

    /// Seconds left at the average rate since this reporter started; nil before any progress.
    private func eta(step: Int, time: Double) -> Double? {
        guard let total = totalSteps else { return nil }
        if step >= total { return 0 }
        let done = Double(step - startStep), elapsed = time - startTime
        guard done > 0, elapsed > 0 else { return nil }
        return Double(total - step) * elapsed / done
    }

    // MARK: - Helpers

    /// `h:mm:ss`, e.g. 90 s is "0:01:30".
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "-:--:--" }
        let total = Int(min(seconds, 1e9).rounded())
        let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60)
        return "\(hours):" + (minutes < 10 ? "0" : "") + "\(minutes):" + (secs < 10 ? "0" : "") + "\(secs)"
    }

    /// Seconds on the monotonic clock (wall-clock jumps must not distort the ETA).
    public static func monotonicSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }

    /// Unbuffered, so the status line appears at once (stderr through stdio might be buffered).
    public static func writeToStandardError(_ text: String) {
        try? ReportFile.writeAll(STDERR_FILENO, Array(text.utf8), path: "stderr")
    }

    /// The width of the terminal on stderr, or 100 when it cannot say.
    static func terminalColumns() -> Int {
        var size = winsize()
        #if os(Linux)
        let result = ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size)
        #else
        let result = withUnsafeMutablePointer(to: &size) { ioctl(STDERR_FILENO, 0x4008_7468, $0) }   // TIOCGWINSZ
        #endif
        return result == 0 && size.ws_col > 0 ? Int(size.ws_col) : defaultWidth
    }
}
