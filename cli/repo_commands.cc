#include "cli/repo_commands.h"

#include <boost/program_options.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "agent/progress.h"
#include "base/log.h"
#include "cli/parse.h"
#include "repo/catalog.h"
#include "repo/check.h"
#include "repo/prune.h"
#include "repo/repository.h"

namespace po = boost::program_options;

namespace hotsnap {
namespace {

std::string Join(const std::vector<std::string>& parts, const std::string& by) {
  std::string text;
  for (const std::string& part : parts) text += (text.empty() ? "" : by) + part;
  return text;
}

}  // namespace

Status RunListCommand(const std::vector<std::string>& args) {
  po::options_description d("list options");
  d.add_options()("json", "print a JSON array, one object per image (fields: source, file, kind, parent, "
                          "image_hash, created_utc, created_utc_s, image_bytes, run_id)");
  auto p = Parse(args, "hotsnap list REPO [--json]",
                 "List the images in the repository REPO from its catalog, oldest first: source, time\n"
                 "(UTC), kind (full or delta), size and, for a delta, its parent.",
                 d, {"REPO"});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  auto images = ListRepository(p->vm["REPO"].as<std::string>());
  if (!images.ok()) return images.status();
  if (p->vm.count("json")) {
    nlohmann::json list = nlohmann::json::array();
    for (const RepoImage& image : *images) list.push_back(RepoImageToJson(image));
    std::printf("%s\n", list.dump(2).c_str());
    return Status::Ok();
  }
  std::printf("%-20s %-20s %-5s %10s  %s\n", "SOURCE", "TIME (UTC)", "KIND", "SIZE", "FILE (PARENT)");
  for (const RepoImage& image : *images) {
    std::string file = image.file + (IsFullImage(image) ? "" : " (" + image.parent_file + ")");
    std::printf("%-20s %-20s %-5s %10s  %s\n", image.source.c_str(), FormatUtc(image.created_utc_s).c_str(),
                IsFullImage(image) ? "full" : "delta", HumanBytes(image.image_bytes).c_str(), file.c_str());
  }
  return Status::Ok();
}

Status RunCheckCommand(const std::vector<std::string>& args) {
  po::options_description d("check options");
  d.add_options()("read-data", "also read every image in full and check every hash (hotsnap verify of each chain)")
      ("quiet,q", "print only problems");
  RepoCheckOptions o;
  auto p = Parse(args, "hotsnap check REPO [--read-data]",
                 "Check the repository REPO: its catalog against the images' own metadata (missing\n"
                 "files, unknown files, entries that differ), and every chain (each delta's parent\n"
                 "present, hashes and geometry agreeing). With --read-data every image is also read in\n"
                 "full and checked. Exit 5 if anything is wrong, each problem named. Changes nothing.",
                 d, {"REPO"});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  if (p->vm.count("quiet")) SetQuiet(true);
  o.repo = p->vm["REPO"].as<std::string>();
  o.read_data = p->vm.count("read-data") > 0;
  auto r = CheckRepository(o);
  if (!r.ok()) return r.status();
  for (const std::string& note : r->notes) Notice("note: " + note);
  for (const std::string& problem : r->problems) std::printf("problem: %s\n", problem.c_str());
  std::fflush(stdout);
  if (!r->problems.empty()) {
    return Status(Code::kIntegrity, "repository " + o.repo + ": " + std::to_string(r->problems.size()) +
                                        " problem(s); the first: " + r->problems.front());
  }
  std::string read = o.read_data ? ", " + std::to_string(r->images_read) + " read in full and checked" : "";
  std::printf("OK: %s — %zu images in the catalog, all present, chains complete%s\n", o.repo.c_str(),
              r->catalog_images, read.c_str());
  return Status::Ok();
}

Status RunPruneCommand(const std::vector<std::string>& args) {
  po::options_description d("prune options");
  PruneOptions o;
  d.add_options()
      ("keep-last", po::value<int>(&o.policy.keep_last)->default_value(0), "keep the N newest images (-1 for each "
       "--keep-... option: every one, restic's unlimited)")
      ("keep-hourly", po::value<int>(&o.policy.keep_hourly)->default_value(0), "keep the newest image of each of the N newest hours")
      ("keep-daily", po::value<int>(&o.policy.keep_daily)->default_value(0), "... days")
      ("keep-weekly", po::value<int>(&o.policy.keep_weekly)->default_value(0), "... ISO weeks")
      ("keep-monthly", po::value<int>(&o.policy.keep_monthly)->default_value(0), "... months")
      ("keep-yearly", po::value<int>(&o.policy.keep_yearly)->default_value(0), "... years")
      ("source", po::value<std::string>(&o.source), "prune only this source's images")
      ("dry-run", "print the plan (what is removed, what is merged, what is kept and why); change nothing")
      ("quiet,q", "print only errors");
  auto p = Parse(args, "hotsnap prune REPO --keep-last N --keep-daily N ... [--dry-run]",
                 "Remove the images of each source in REPO that the policy does not keep (restic's\n"
                 "rules, local time). Chain-aware: an image a kept delta needs is not removed but merged\n"
                 "forward (hotsnap merge) into its child; kept images never change content. The catalog\n"
                 "is rewritten after each step.",
                 d, {"REPO"});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  if (p->vm.count("quiet")) SetQuiet(true);
  for (int n : {o.policy.keep_last, o.policy.keep_hourly, o.policy.keep_daily, o.policy.keep_weekly,
                o.policy.keep_monthly, o.policy.keep_yearly}) {
    if (n < -1) return Status(Code::kUsage, "--keep-... counts are N >= 0, or -1 for every one (restic's unlimited)");
  }
  o.repo = p->vm["REPO"].as<std::string>();
  o.dry_run = p->vm.count("dry-run") > 0;
  auto r = PruneRepository(o);
  if (!r.ok()) return r.status();
  for (const SourcePrune& source : r->sources) {
    if (o.dry_run) {
      std::printf("%s:\n", source.source.c_str());
      for (const PruneStep& step : source.plan.steps) {
        std::printf("  would %s %s: %s\n", step.kind == PruneStep::Kind::kMerge ? "merge" : "remove",
                    step.file.c_str(), step.reason.c_str());
      }
      for (size_t i = 0; i < source.plan.kept.size(); ++i) {
        std::string why = i < source.plan.kept_reasons.size() ? Join(source.plan.kept_reasons[i], ", ") : "";
        std::printf("  keep %s: %s\n", source.plan.kept[i].c_str(), why.c_str());
      }
      continue;
    }
    for (const std::string& line : source.done) Notice(source.source + ": " + line);
    Notice(source.source + ": " + std::to_string(source.steps_done) + " step(s), " +
           std::to_string(source.plan.kept.size()) + " image(s) kept");
  }
  std::fflush(stdout);
  return Status::Ok();
}

}  // namespace hotsnap
