import Torch

extension Recipe {
    /// What this machine cannot do of what the recipe asks: a device it lacks, a precision its
    /// device does not train in (fp16 on the CPU).
    func problemsWithThisMachine() -> [RecipeError] {
        do {
            let device = try Device.parse(device).validated()
            return precision.problems(on: device).map { RecipeError(path: "precision", message: $0) }
        } catch {
            return [RecipeError(path: "device", message: "\(error)")]
        }
    }
}
