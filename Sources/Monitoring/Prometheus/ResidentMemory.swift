import Foundation

/// The process's resident memory now, as Prometheus' own client libraries report it (the peak
/// is `Torch.hostPeakResidentBytes`).
enum ResidentMemory {
    /// Resident set size now, in bytes: the second field of /proc/self/statm, in pages (nil
    /// where there is no procfs).
    static var currentBytes: Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
