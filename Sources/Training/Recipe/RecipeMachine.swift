import Torch

extension Recipe {
    /// What this machine cannot do of what the recipe asks: a device it lacks.
    func problemsWithThisMachine() -> [RecipeError] {
        do {
            _ = try Device.parse(device).validated()
            return []
        } catch {
            return [RecipeError(path: "device", message: "\(error)")]
        }
    }
}
