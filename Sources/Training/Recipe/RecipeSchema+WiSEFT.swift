import Foundation

// The `wise_ft` section's keys and rules (RecipeSchema.swift holds the others).

extension Recipe.WiSEFTSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("alphas", &alphas, help: "The mixing weights evaluated, each in [0, 1] (0: the starting model, 1: `best/`).")
        coder.pathField("zero_shot", &zeroShot, help: "The zero-shot end (a dual-encoder checkpoint folder of the same architecture); null: `model.checkpoint`, the run's starting model.")
        var extra = extraVal.map(RecipeSourceFields.init)
        coder.sectionList("extra_val", &extra, start: RecipeSourceFields(), type: "a list of data sources",
                          help: "Validation sets evaluated besides `data.val`, each as `data.val` is given (an object with `shards` or `manifest` and its columns, or a path); with `eval.zeroshot` their samples need class labels too. Named by their file names.",
                          shorthand: RecipeSourceFields.object(forPath:))
        extraVal = extra.compactMap(\.source)
        coder.field("save_best", &saveBest, help: "Also write the best α's interpolation as a Hugging Face checkpoint in the run folder, `wise_ft_best/` (with the starting model's tokenizer and preprocessor files).")
        guard coder.isDecoding else { return }
        if alphas.isEmpty { coder.report("alphas", "must list at least one α") }
        for alpha in alphas where !(0...1).contains(alpha) {
            coder.report("alphas", "α \(formatNumber(alpha)) is outside [0, 1] (0: the zero-shot model, 1: the fine-tuned model)")
        }
        for alpha in Set(alphas) where alphas.filter({ $0 == alpha }).count > 1 {
            coder.report("alphas", "α \(formatNumber(alpha)) is listed more than once")
        }
    }
}

extension Recipe {
    /// What `wise_ft` needs from the rest of the recipe: a zero-shot dual encoder (a run built
    /// from scratch has none), `best/` and the validation data it is chosen on, and `train`.
    func checkWiSEFT(_ coder: inout RecipeCoder) {
        guard let wiseFT else { return }
        if distill != nil {
            coder.report("wise_ft", "applies to `train` runs; a distilled student is not a fine-tuned copy of a zero-shot model")
        }
        // Interpolating with weights the run did not start from is not WiSE-FT (the two ends
        // lie in different basins), whatever zero_shot names.
        if model.checkpoint == nil, model.vision.checkpoint == nil, model.text.checkpoint == nil {
            coder.report("wise_ft", "needs a zero-shot model that this run fine-tunes, and this run starts from scratch (no model.checkpoint); start from a checkpoint with model.checkpoint, or remove wise_ft")
        } else if wiseFT.zeroShot == nil, model.checkpoint == nil {
            coder.report("wise_ft", "needs a zero-shot dual encoder to interpolate with: this run joins towers from separate checkpoints (no model.checkpoint); name the dual encoder to interpolate with in wise_ft.zero_shot")
        }
        if !checkpoint.keepBest {
            coder.report("wise_ft", "interpolates with the run's best/, which checkpoint.keep_best false does not keep; set it to true")
        }
        if data.val == nil, !coder.hasProblem(at: "data.val") {
            coder.report("wise_ft", "needs data.val: best/ is chosen on it, and it is the first set each α is evaluated on")
        }
    }
}
