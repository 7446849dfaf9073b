import ArgumentParser
import Datasets
import Foundation
import Torch
import RunCommands
import Training

/// Teacher → student knowledge distillation from a JSON recipe (the recipe's `distill` section
/// names the teacher and the loss weights; `model` describes the student).
@main
struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Distil a teacher checkpoint into a smaller student from a JSON recipe.", version: ClipTune.versionLine)

    @OptionGroup var options: RunOptions
    @OptionGroup var launch: LaunchOptions

    func run() throws {
        if launch.launches { throw ExitCode(try Launcher.run(launch)) }
        let (recipe, resolved) = try options.load(defaultRecipe: "Recipes/distill.json")
        let group = try dataParallelGroup(recipe)
        let monitoring = try startMonitoring(recipe, group: group)
        defer { monitoring.close() }
        let plan = try RunBuilder.distillation(recipe, resolved: resolved, group: group)
        let setup = plan.setup, teacher = plan.teacher
        guard (group?.rank ?? 0) == 0 else {   // rank 0 alone prints, evaluates the teacher and reports
            let trainer = try Trainer(setup, start: options.start(recipe))
            try attach(monitoring, to: trainer)
            try finish(try trainer.run(), trainer: trainer)
            return
        }
        for warning in plan.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        printToStandardError(RunSummary.lines(recipe, setup))
        print("run \(recipe.name): \(counted(setup.totalSteps, "step")) (\(setup.stepsPerEpoch ?? 0) per epoch) → \(setup.runFolder)")
        print(String(format: "teacher %@: %.2fM parameters; student: %.2fM parameters (%.1f%%), %.2fM trainable", teacher.path,
                     Double(teacher.parameterCount) / 1e6, Double(setup.model.parameterCount) / 1e6,
                     100 * Double(setup.model.parameterCount) / Double(teacher.parameterCount), Double(setup.model.trainableParameterCount) / 1e6))
        if plan.teacherValidation != nil, !teacher.isTextOnly { print("evaluating the teacher…") }
        let teacherMetrics = try DistillationReport.teacherMetrics(plan)
        let trainer = try Trainer(setup, start: options.start(recipe))
        try attach(monitoring, to: trainer)
        try finish(try trainer.run(), trainer: trainer)

        let report = try DistillationReport.measure(plan, trainer: trainer, teacherMetrics: teacherMetrics)
        print("\n" + report.table, terminator: "")
        try report.write(to: "\(setup.runFolder)/distill_report.json")
        print("student: \(report.studentCheckpoint); report: \(setup.runFolder)/distill_report.json")
    }
}
