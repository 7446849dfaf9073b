import Foundation

/// A small compositional world for the embedded dataset: one or two shapes of some colour,
/// size and position on a textured background, described in varied English. Captions name
/// every attribute, so matching images to captions needs all of them (and the relation between
/// two objects), not just one.
public struct ShapesWorld: Sendable {
    public static let shapes = ["circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon"]
    public static let colors: [(name: String, rgb: (Double, Double, Double))] = [
        ("red", (220, 40, 40)), ("green", (40, 170, 60)), ("blue", (40, 80, 220)), ("yellow", (240, 220, 40)),
        ("orange", (245, 140, 20)), ("purple", (140, 50, 180)), ("pink", (245, 140, 190)), ("white", (245, 245, 245)),
        ("black", (20, 20, 20)), ("brown", (130, 80, 40)),
    ]
    public static let backgrounds: [(name: String, rgb: (Double, Double, Double))] = [
        ("white", (235, 235, 230)), ("gray", (128, 128, 128)), ("black", (30, 30, 35)), ("sand", (215, 195, 150)),
        ("sky blue", (150, 200, 240)), ("dark green", (30, 80, 40)), ("lavender", (200, 190, 230)),
    ]
    static let sizes: [(name: String, radius: Double)] = [("small", 7), ("medium", 11), ("large", 15)]
    static let positions: [(name: String, phrase: String, x: Double, y: Double)] = [
        ("top left", "in the top left corner", 0.22, 0.22), ("top", "at the top", 0.5, 0.22), ("top right", "in the top right corner", 0.78, 0.22),
        ("left", "on the left", 0.22, 0.5), ("center", "in the middle", 0.5, 0.5), ("right", "on the right", 0.78, 0.5),
        ("bottom left", "in the bottom left corner", 0.22, 0.78), ("bottom", "at the bottom", 0.5, 0.78), ("bottom right", "in the bottom right corner", 0.78, 0.78),
    ]

    /// Prompt templates for zero-shot classification of the main shape.
    public static let templates = ["a photo of a {}.", "a drawing of a {}.", "a picture of a {}.", "an image with a {}.", "a simple {} shape."]

    public struct Object: Sendable {
        public let shape: String
        public let color: String
        public let size: String
        public let position: String
    }

    public struct Sample: Sendable {
        public let image: RGBImage
        /// Three phrasings of the same description.
        public let captions: [String]
        /// The largest object's shape (zero-shot class).
        public let label: String
        public let objects: [Object]
        public let background: String
    }

    public let imageSize: Int

    public init(imageSize: Int = 64) { self.imageSize = imageSize }

    /// Sample `index` of a split, the same on every machine.
    public func sample(seed: UInt64, split: Int, index: Int) -> Sample {
        var random = SeededRandom(seed: seed, epoch: split, index: index)
        func pick<T>(_ list: [T]) -> T { list[Int(random.next() % UInt64(list.count))] }
        let background = Self.backgrounds[Int(random.next() % UInt64(Self.backgrounds.count))]
        let two = random.chance(0.5)
        var objects: [(Object, radius: Double, rgb: (Double, Double, Double), cx: Double, cy: Double)] = []
        var usedPositions = Set<String>(), usedColors = Set<String>([background.name])
        for i in 0..<(two ? 2 : 1) {
            let size = two ? (i == 0 ? Self.sizes[2] : pick(Array(Self.sizes[0...1]))) : pick(Self.sizes)
            // Two objects stay two grid steps apart (so not at the centre) to be told apart at 64 px.
            let position = pick(Self.positions.filter {
                !usedPositions.contains($0.name) && (!two || $0.name != "center") && (i == 0 || !areAdjacent($0.name, objects[0].0.position))
            })
            let color = pick(Self.colors.filter { !usedColors.contains($0.name) })
            usedPositions.insert(position.name)
            usedColors.insert(color.name)
            let jitter = (random.uniform(-0.04, 0.04), random.uniform(-0.04, 0.04))
            objects.append((Object(shape: pick(Self.shapes), color: color.name, size: size.name, position: position.name),
                            size.radius * Double(imageSize) / 64, color.rgb,
                            (position.x + jitter.0) * Double(imageSize), (position.y + jitter.1) * Double(imageSize)))
        }
        var image = texturedBackground(background.rgb, &random)
        for o in objects { draw(o.0.shape, cx: o.cx, cy: o.cy, radius: o.radius, rgb: o.rgb, rotation: random.uniform(-0.2, 0.2), on: &image) }
        let described = objects.map { $0.0 }
        let captions = (0..<3).map { _ in caption(described, background: background.name, &random) }
        return Sample(image: image, captions: captions, label: described[0].shape, objects: described, background: background.name)
    }

    private func areAdjacent(_ a: String, _ b: String) -> Bool {
        guard let p = Self.positions.first(where: { $0.name == a }), let q = Self.positions.first(where: { $0.name == b }) else { return false }
        return Swift.abs(p.x - q.x) < 0.5 && Swift.abs(p.y - q.y) < 0.5
    }

    private func caption(_ objects: [Object], background: String, _ random: inout SeededRandom) -> String {
        let text = rawCaption(objects, background: background, &random)
        // "a orange" → "an orange", "A orange" → "An orange".
        return text.replacingOccurrences(of: "(^|\\s)([Aa]) (?=[aeiou])", with: "$1$2n ", options: .regularExpression)
    }

    private func rawCaption(_ objects: [Object], background: String, _ random: inout SeededRandom) -> String {
        func pick(_ list: [String]) -> String { list[Int(random.next() % UInt64(list.count))] }
        func phrase(_ o: Object) -> String {
            let position = Self.positions.first { $0.name == o.position }!.phrase
            return pick([
                "a \(o.size) \(o.color) \(o.shape) \(position)",
                "a \(o.color) \(o.shape) \(position), \(o.size)",
                "a \(o.size) \(o.shape) colored \(o.color) \(position)",
                "a \(o.color) \(o.size) \(o.shape) \(position)",
            ])
        }
        let backdrop = pick(["on a \(background) background", "against a \(background) backdrop", "over \(background)"])
        if objects.count == 1 {
            let body = phrase(objects[0])
            return pick(["\(body) \(backdrop).", "There is \(body) \(backdrop).", "A picture of \(body) \(backdrop).", "\(body.prefix(1).uppercased() + body.dropFirst()) \(backdrop)."])
        }
        let (a, b) = (objects[0], objects[1])
        let pa = Self.positions.first { $0.name == a.position }!, pb = Self.positions.first { $0.name == b.position }!
        let relation: String
        if Swift.abs(pa.x - pb.x) >= Swift.abs(pa.y - pb.y) {
            relation = pa.x < pb.x ? "to the left of" : "to the right of"
        } else {
            relation = pa.y < pb.y ? "above" : "below"
        }
        return pick([
            "A large \(a.color) \(a.shape) \(relation) a \(b.size) \(b.color) \(b.shape) \(backdrop).",
            "\(phrase(a).prefix(1).uppercased() + phrase(a).dropFirst()) and \(phrase(b)) \(backdrop).",
            "Two shapes \(backdrop): a \(a.color) \(a.shape) \(relation) a \(b.color) \(b.shape).",
        ])
    }

    private func texturedBackground(_ rgb: (Double, Double, Double), _ random: inout SeededRandom) -> RGBImage {
        let n = imageSize
        var pixels = [UInt8](repeating: 0, count: n * n * 3)
        let gradient = (random.uniform(-25, 25), random.uniform(-25, 25))
        let noise = random.uniform(3, 12)
        for y in 0..<n {
            for x in 0..<n {
                let shade = gradient.0 * Double(x) / Double(n) + gradient.1 * Double(y) / Double(n)
                let grain = (random.unit() - 0.5) * 2 * noise
                for (c, v) in [rgb.0, rgb.1, rgb.2].enumerated() {
                    pixels[(y * n + x) * 3 + c] = UInt8(Swift.max(0, Swift.min(255, v + shade + grain)).rounded())
                }
            }
        }
        return RGBImage(width: n, height: n, pixels: pixels)
    }

    /// Draws an anti-aliased shape (4×4 supersampling) with slight shading.
    private func draw(_ shape: String, cx: Double, cy: Double, radius r: Double, rgb: (Double, Double, Double), rotation: Double,
                      on image: inout RGBImage) {
        let polygon = Self.polygon(shape, radius: r, rotation: rotation)
        let n = imageSize
        for y in Swift.max(0, Int(cy - r) - 1)...Swift.min(n - 1, Int(cy + r) + 1) {
            for x in Swift.max(0, Int(cx - r) - 1)...Swift.min(n - 1, Int(cx + r) + 1) {
                var covered = 0
                for sy in 0..<4 {
                    for sx in 0..<4 {
                        let dx = Double(x) + (Double(sx) + 0.5) / 4 - cx, dy = Double(y) + (Double(sy) + 0.5) / 4 - cy
                        if Self.contains(shape, polygon, dx, dy, r) { covered += 1 }
                    }
                }
                guard covered > 0 else { continue }
                let alpha = Double(covered) / 16
                let light = 1 + 0.12 * (-(Double(x) - cx) - (Double(y) - cy)) / r   // lit from the top left
                for (c, v) in [rgb.0, rgb.1, rgb.2].enumerated() {
                    let i = (y * n + x) * 3 + c
                    let value = Swift.max(0, Swift.min(255, v * light))
                    image.pixels[i] = UInt8((Double(image.pixels[i]) * (1 - alpha) + value * alpha).rounded())
                }
            }
        }
    }

    static func polygon(_ shape: String, radius r: Double, rotation: Double) -> [(Double, Double)] {
        func regular(_ k: Int, _ radii: [Double], start: Double) -> [(Double, Double)] {
            (0..<k).map { i in
                let angle = start + rotation + 2 * Double.pi * Double(i) / Double(k)
                let rr = radii[i % radii.count]
                return (rr * Foundation.cos(angle), rr * Foundation.sin(angle))
            }
        }
        switch shape {
        case "triangle": return regular(3, [r], start: -Double.pi / 2)
        case "star": return regular(10, [r, r * 0.45], start: -Double.pi / 2)
        case "hexagon": return regular(6, [r * 0.95], start: 0)
        case "diamond": return regular(4, [r], start: -Double.pi / 2)
        case "square": return regular(4, [r * 1.1], start: Double.pi / 4)
        default: return []
        }
    }

    static func contains(_ shape: String, _ polygon: [(Double, Double)], _ x: Double, _ y: Double, _ r: Double) -> Bool {
        switch shape {
        case "circle": return x * x + y * y <= r * r
        case "ring": let d = x * x + y * y; return d <= r * r && d >= 0.3 * r * r
        case "cross": return (Swift.abs(x) <= 0.32 * r && Swift.abs(y) <= r) || (Swift.abs(y) <= 0.32 * r && Swift.abs(x) <= r)
        default:
            var inside = false
            var j = polygon.count - 1
            for i in 0..<polygon.count {
                let (xi, yi) = polygon[i], (xj, yj) = polygon[j]
                if (yi > y) != (yj > y), x < (xj - xi) * (y - yi) / (yj - yi) + xi { inside.toggle() }
                j = i
            }
            return inside
        }
    }
}
