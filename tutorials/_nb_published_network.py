"""Tutorial 11: compare a published network (torchvision) with brain regions, end to end."""

from __future__ import annotations

from _build_notebooks import Cell, code, md, notebook, setup


@notebook("11_published_network")
def published_network_nb() -> list[Cell]:
    return [
        md("""
        # 11. Compare a published network with your regions

        **You will learn** to go from NIfTI betas to brain RDMs in an HDF5 file (`brainrdl
        rdms`), to load a torchvision network by name with its own preprocessing
        (`brainrdl.load_model`), to build a stimulus set whose ids meet the brain RDMs'
        (`brainrdl.StimulusSet`), and to get its layer profile with noise ceilings and bootstrap
        intervals (`layer_names="auto"`), in Python and from the command line.

        The network here has **random weights**: brainrdl never downloads, and the test suite
        runs without network access. The last section says what changes with trained weights
        and how to load them from a local file. Runs in well under a minute on a CPU.
        """),
        setup("""
        import tempfile
        from pathlib import Path

        from PIL import Image
        from rsatoolbox.rdm import load_rdm

        import brainrdl
        from brainrdl.analysis import plot
        from brainrdl.cli.main import main as brainrdl_cli
        from data_adapters.demo import make_demo_study

        warnings.filterwarnings("ignore", message="IProgress not found")  # plain progress bars
        """),
        md("""
        ## 1. Brain RDMs from NIfTI betas, into one HDF5 file

        The embedded demo study: 3 subjects, 40 digit images, beta images from 4 runs and an
        atlas with two simulated regions: "EVC", whose voxels mix the images' pixels, and "IT",
        whose voxels carry the digits' class structure. `brainrdl rdms` computes one crossnobis
        RDM per region and subject and writes them to one rsatoolbox HDF5 file (the same
        command runs in a terminal as `brainrdl rdms --betas ... --out rdms.hdf5`).
        """),
        code("""
        N_BOOTSTRAP = 200   # 1,000 (the CLI's default) or more for a paper
        work = Path(tempfile.mkdtemp(prefix="brainrdl-published-"))
        study = make_demo_study(work / "study", n_stimuli=40, n_runs=4, n_subjects=3,
                                with_bold=False, with_nwb=False)
        os.chdir(work)      # the rest uses short relative paths
        status = brainrdl_cli(["rdms",
                               "--betas", *[str(p) for p in study.betas],
                               "--design", *[str(p) for p in study.design],
                               "--atlas", str(study.atlas), "--labels", str(study.atlas_labels),
                               "--method", "crossnobis", "--no-progress", "--out", "rdms.hdf5"])
        brain_file = load_rdm("rdms.hdf5", file_type="hdf5")
        print("exit status", status, "| rdm descriptors:", sorted(brain_file.rdm_descriptors))
        regions = {str(roi): brain_file.subset("roi", roi)
                   for roi in dict.fromkeys(brain_file.rdm_descriptors["roi"])}
        print({str(roi): f"{r.n_rdm} subject RDMs" for roi, r in regions.items()})
        """),
        md("""
        ## 2. Stimuli named by their stimulus ids

        The RDM conditions are labelled by stimulus id (`digit_0163`, ...). Layer RDMs are
        matched to them by id, so each image file is named after its id. (When your files have
        other names, a TSV with columns `stimulus_id` and `path` does the mapping; see the
        how-to page.)
        """),
        code("""
        folder = work / "stimuli"
        folder.mkdir()
        for image, stimulus_id in zip(study.images, study.stimulus_ids):
            pixels = (np.asarray(image).squeeze() * 255).round().astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{stimulus_id}.png")
        stimuli = brainrdl.StimulusSet.from_folder(folder)
        print(len(stimuli), "images; first ids:", stimuli.ids[:3])
        print("brain stimuli covered:",
              len(stimuli.check_ids(brain_file.pattern_descriptors["stimulus"])))
        """),
        md("""
        ## 3. A torchvision network by name

        `load_model` returns the network in eval mode, its preprocessing (ImageNet's resize,
        centre crop and normalisation for a torchvision model) and the layers `"auto"` picks:
        the four residual stages, the pooled features and the logits. The digits are greyscale;
        `for_model` converts them to the three channels the network expects.
        """),
        code("""
        torch.manual_seed(0)
        model, transform, layers = brainrdl.load_model("torchvision:resnet18", weights=None)
        print(transform)
        print("layers='auto':", layers)
        ready = stimuli.for_model(transform)
        print("one preprocessed stimulus:", tuple(ready[0].shape))
        """),
        md("""
        ## 4. The layer profile, with noise ceilings

        One row per layer × region. `similarity` is the mean over subjects of the correlation of
        the layer RDM with each subject's RDM, `ci_low`/`ci_high` a bootstrap interval over
        stimuli, and the noise ceiling the range a perfect model would reach given how much the
        subjects differ.
        """),
        code("""
        table = brainrdl.compare_layers(model, regions, stimuli=ready, layer_names="auto",
                                        method="corr", subject_descriptor="subject",
                                        n_bootstrap=N_BOOTSTRAP, seed=0,
                                        extract_kwargs={"batch_size": 20})
        table[["layer", "region", "similarity", "ci_low", "ci_high", "noise_ceiling_low",
               "noise_ceiling_high", "best"]]
        """),
        code("""
        ax = plot.similarity_profile(table)
        ax.set_title("ResNet-18, random weights")
        plt.tight_layout()
        best = table[table["best"]].set_index("region")
        for region, row in best.iterrows():
            below = row.ci_high < row.noise_ceiling_low
            print(f"{region}: best layer {row.layer}, similarity {row.similarity:.2f} "
                  f"[{row.ci_low:.2f}, {row.ci_high:.2f}]; noise ceiling "
                  f"{row.noise_ceiling_low:.2f}-{row.noise_ceiling_high:.2f}; interval "
                  f"{'below' if below else 'reaches'} the lower bound")
        late = table[table["layer"].isin(["avgpool", "fc"])]
        print("pooled features / logits intervals that include 0:",
              [f"{r.layer}/{r.region}" for r in late.itertuples() if r.ci_low <= 0 <= r.ci_high])
        """),
        md("""
        What this run shows: for both regions the best layer is the first residual stage
        (`layer1`), and similarity falls with depth (the logits about level with the pooled
        features). For EVC, a random mixture of pixels in the
        simulation, the random network's early stages match well (about 0.6), yet the interval
        stays below the noise-ceiling band: part, not all, of the explainable EVC structure.
        For IT, which carries the digits' class structure, every layer is far lower (about 0.15
        at best): the best interval's upper end only just reaches the lower bound of IT's wide
        noise-ceiling band, and the intervals of the pooled features and the logits include
        zero. A network with random weights has no learned class structure to offer.

        ## 5. The same from the command line

        One command does sections 2–4 (bootstrap intervals are on by default in the CLI, here
        200 resamples to keep the tutorial short). It writes the table as CSV and the plots.
        """),
        code("""
        status = brainrdl_cli(["compare", "--model", "torchvision:resnet18",
                               "--stimuli", "stimuli", "--brain", "rdms.hdf5",
                               "--layers", "auto", "--n-bootstrap", str(N_BOOTSTRAP),
                               "--batch-size", "20", "--no-progress", "--out", "results"])
        cli_table = pd.read_csv("results/comparison.csv")
        print("exit status", status, "| files:", sorted(p.name for p in Path("results").iterdir()))
        same = np.allclose(cli_table["similarity"], table["similarity"], atol=1e-6)
        print("same similarities as the Python call:", same)
        """),
        md("""
        The command line sets the random seed (`--seed`, default 0) before building the
        network, as this notebook did with `torch.manual_seed(0)`, so both runs use the same
        random weights; the check above prints whether the similarities agree.

        ## What changes with trained weights

        Everything above used **random** weights. A random convolutional network still passes
        local image structure (edges, blobs, overall brightness) through its early stages, which
        is why early layers can match early visual regions even untrained. What a random network
        lacks is the category structure that training on object recognition builds in the later
        stages; with trained weights the late part of the profile is the part that changes, and
        in real IT data it is usually where the best layer moves.

        To use trained weights, give a local file or the library's cached weights, e.g.
        `brainrdl.load_model("torchvision:resnet18", weights="resnet18.pth")` or
        `weights="DEFAULT"` when `~/.cache/torch/hub/checkpoints/` holds the file (a missing
        file raises an error saying where to put it; nothing is downloaded). From the command
        line, `--model torchvision:resnet18 --weights none --model torchvision:resnet18
        --weights DEFAULT` puts random and trained weights on one table and one plot.
        """),
    ]
