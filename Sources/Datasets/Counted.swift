/// A count with its noun in the right number, for everything the programs print:
/// `counted(1, "step")` is "1 step", `counted(2, "step")` "2 steps", `counted(0, "entry", plural: "entries")`
/// "0 entries". `number` formats the count (thousands separators, say).
public func counted(_ count: Int, _ noun: String, plural: String? = nil, number: (Int) -> String = { String($0) }) -> String {
    "\(number(count)) \(count == 1 ? noun : plural ?? noun + "s")"
}
