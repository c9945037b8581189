"""Tutorial 09: MEG / EEG epochs → time-resolved RDMs → model layers over time."""

from _build_notebooks import Cell, code, md, notebook, setup


@notebook("09_meg_eeg")
def meg_eeg() -> list[Cell]:
    return [
        md("""
        # 9. MEG / EEG: time-resolved RDMs and "when does the brain look like layer k?"

        **You will learn** to turn MNE epochs (in memory or `-epo.fif` files) into one RDM per
        time window with `data_adapters.meeg.rdms_from_epochs` (crossnobis, with the noise
        estimated at every time point), how sensors of different types are put on one footing,
        and to compare model layers with the brain over time with
        `brainrdl.compare_layers_over_time`.

        The epochs are simulated: four subjects see the demo digits; magnetometers and EEG
        electrodes pick up a pixel-like response around 0.1 s and a digit-class response around
        0.25 s (`data_adapters.demo.meeg`). Needs MNE (`pip install brainrdl[meeg]`). Runs in
        well under a minute.
        """),
        setup("""
        import tempfile
        from pathlib import Path

        from rsatoolbox.rdm import RDMs

        import brainrdl
        from brainrdl.nets.models import DigitCNN
        from data_adapters.demo import load_demo_stimuli
        from data_adapters.demo.meeg import COMPONENTS, demo_epochs_models, write_demo_epochs
        from data_adapters.meeg import rdms_from_epochs, read_epochs_data

        # ipywidgets is not installed here: tqdm would warn that it falls back to text bars
        warnings.filterwarnings("ignore", message="IProgress not found")
        """),
        code("""
        N_STIMULI, N_REPEATS, N_SUBJECTS = 20, 8, 4
        WINDOW = 0.02          # seconds per RDM
        """),
        md("""
        ## Epochs files, written with MNE

        One `-epo.fif` file per subject, written by MNE's own writer; the event names are the
        stimulus ids.
        """),
        code("""
        os.chdir(tempfile.mkdtemp(prefix="brainrdl-meeg-"))
        paths = [write_demo_epochs(f"sub-{s + 1:02d}-epo.fif", n_stimuli=N_STIMULI,
                                   n_repeats=N_REPEATS, subject=s)
                 for s in range(N_SUBJECTS)]
        print([p.name for p in paths])
        data = read_epochs_data(paths[0], window=WINDOW)
        print("trials x channels x windows:", data.data.shape)
        print("channel types:", sorted(set(data.ch_types)))
        print("noise SD each type was divided by:",
              {k: f"{v:.1e}" for k, v in data.scales.items()})
        """),
        md("""
        Magnetometers measure tesla (noise around 5e-14 T here), EEG volts (around 5e-6 V): a
        factor of about 10^8. Each type is divided by its own noise standard deviation (the
        residuals of single trials around their condition mean), so both contribute by their
        signal-to-noise ratio, not their unit. Crossnobis then whitens with a noise precision
        estimated at every time window from the same residuals (shrinkage towards the diagonal).
        """),
        md("## One RDM per 20 ms window, per subject"),
        code("""
        per_subject = [rdms_from_epochs(p, window=WINDOW, subject=p.name[:6]) for p in paths]
        brain = per_subject[0]
        print(brain.n_rdm, "RDMs over", brain.n_cond, "stimuli; descriptors:",
              sorted(brain.rdm_descriptors))
        times = np.array(brain.rdm_descriptors["time"])
        mean_d = np.mean([r.dissimilarities.mean(axis=1) for r in per_subject], axis=0)
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(times, mean_d, marker=".")
        for i, (name, (start, stop)) in enumerate(COMPONENTS.items()):
            ax.axvspan(start, stop, color=f"C{i + 1}", alpha=0.15, label=f"{name} component")
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel="time (s)", ylabel="mean crossnobis distance",
               title="average over subjects and stimulus pairs")
        ax.legend(frameon=False)
        plt.show()
        """),
        md("""
        Crossnobis is cross-validated across trials, so where the sensors carry no stimulus
        information (before 0.05 s, between the components, after 0.3 s) the distances
        scatter around zero; they rise only inside the two planted components.

        ## Candidate models: two feature spaces and a small CNN

        `demo_epochs_models` gives the RDMs of the features behind each component (pixels,
        digit class). Beside them we tap two layers of `DigitCNN` with **random weights**
        (nothing is downloaded or trained here).
        """),
        code("""
        features = demo_epochs_models(N_STIMULI)
        features.rdm_descriptors["layer"] = ["pixel features", "digit class"]
        stimuli = load_demo_stimuli(N_STIMULI)
        torch.manual_seed(0)
        cnn_rdms = brainrdl.extract_rdms(DigitCNN(), torch.as_tensor(stimuli.images),
                                         ["conv1", "fc1"], stimulus_ids=stimuli.stimulus_ids,
                                         progress=False)
        # one stack of candidate RDMs (squared euclidean features, correlation-distance layers)
        ids = list(features.pattern_descriptors["stimulus"])
        assert list(cnn_rdms.pattern_descriptors["stimulus"]) == ids
        candidates = RDMs(
            np.vstack([features.get_vectors(), cnn_rdms.get_vectors()]),
            rdm_descriptors={"layer": features.rdm_descriptors["layer"]
                             + [f"CNN {n}" for n in cnn_rdms.rdm_descriptors["layer"]]},
            pattern_descriptors={"stimulus": ids})
        print(candidates.rdm_descriptors["layer"])
        """),
        md("""
        ## Layer × time table and curves with the noise ceiling

        Each time window is compared like a region in `brainrdl.compare_layers`: the mean
        correlation of a model RDM with the subjects' RDMs, and a leave-one-subject-out noise
        ceiling (grey band).
        """),
        code("""
        table = brainrdl.compare_layers_over_time(candidates, per_subject, method="corr")
        table.pivot(index="layer", columns="time", values="similarity").iloc[:, ::3].round(2)
        """),
        code("""
        ax = brainrdl.plot_layers_over_time(table)
        ax.set_title("model RDMs vs MEG/EEG RDMs over time")
        plt.show()
        peaks = table.groupby("layer", sort=False)[["peak"]].first()
        peaks["similarity at peak"] = [
            table[(table.layer == k) & (table.time == t)]["similarity"].iloc[0]
            for k, t in peaks["peak"].items()]
        peaks.round(3)
        """),
        md("""
        The pixel features peak inside the early component and the digit classes inside the
        late one, as planted. The random-weight CNN layers are, like the pixels, a
        transformation of the image, and peak with them in the early window. Outside the
        components the lower bound of the noise ceiling falls to about zero (the subjects share
        no geometry there); its upper bound stays well above zero because it compares each
        subject with an average that includes that subject's own noise.

        ## Noise: per time point, pooled, or none

        `noise="epochs"` (default) estimates the noise precision at every window;
        `noise="pooled"` uses one precision from all windows; `noise=None` only the channel-type
        scaling. The table shows each choice's correlation with the digit-class RDM in the
        window at the late component's peak, for the first subject.
        """),
        code("""
        late = features.subset("layer", "digit class")
        rows = []
        for noise in ["epochs", "pooled", None]:
            r = rdms_from_epochs(paths[0], times=(0.24, 0.259), window=WINDOW, noise=noise)
            rows.append({"noise": str(noise),
                         "r with digit class": float(brainrdl.compare(r, late, "corr")[0, 0])})
        pd.DataFrame(rows)
        """),
        md("""
        The three agree closely here, because the simulated sensor noise is independent across
        channels and the same at every time point: there is little for whitening to remove.
        Whitening matters when noise is correlated across sensors or changes over the epoch,
        which this simulation leaves out; the per-time-point estimate then follows those
        changes, at the cost of fewer samples per estimate than the pooled one.
        """),
        md("""
        ## Bad input is named

        A missing file or a metadata column that does not exist gives an error that says which.
        """),
        code("""
        for bad in [dict(epochs="sub-09-epo.fif"),
                    dict(epochs=paths[0], conditions="category")]:
            try:
                rdms_from_epochs(**bad)
            except (FileNotFoundError, ValueError) as err:
                print(type(err).__name__, ":", err)
        """),
    ]
