"""Notebook 10: the same layers and region compared by RSA, CKA, ridge encoding and Procrustes."""

from __future__ import annotations

from _build_notebooks import Cell, code, md, notebook, setup


@notebook("10_rsa_cka_encoding")
def rsa_cka_encoding_nb() -> list[Cell]:
    return [
        md("""
        # 10. One table, four metrics: RSA, CKA, ridge encoding, Procrustes

        **You will learn** to compare the layers of a network with one brain region by
        representational similarity analysis (RDMs), linear CKA, cross-validated ridge encoding
        and the Procrustes shape metric through the same `compare_layers` call, with bootstrap
        intervals, and why the metrics can rank the layers differently. The formulas are on the
        docs page *RSA, CKA, encoding, shape*. Runs in under a minute on the embedded demo data.
        """),
        setup("""
        warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm in notebooks
        import tempfile

        import rsatoolbox

        from brainrdl import compare_layers, fit
        from brainrdl.nets.models import DigitCNN
        from data_adapters.demo import load_task_digits, make_demo_study
        from data_adapters.fmri import datasets_from_betas, rdms_from_betas
        """),
        md("""
        ## Data: three simulated subjects, region IT

        The demo study has 100 digit images, 6 runs of beta images per subject. RSA needs the
        region's RDMs; the other metrics need its *patterns*: an rsatoolbox `Dataset` per subject,
        stimuli × voxels, labelled by a `stimulus` descriptor. The Datasets keep the 6 runs as
        repeated observations: the pattern metrics average them per stimulus, and encoding uses
        the repeats for a split-half noise ceiling.
        """),
        code("""
        N_BOOTSTRAP = 100        # 1,000 or more for a paper
        study = make_demo_study(tempfile.mkdtemp(prefix="brainrdl-demo-"), n_subjects=3,
                                with_bold=False, with_nwb=False)
        patterns = [datasets_from_betas(b, d, atlas=study.atlas, labels=study.labels,
                                        subject=s)["IT"]
                    for b, d, s in zip(study.betas, study.design, study.subjects)]
        rdms = [rdms_from_betas(b, d, atlas=study.atlas, labels=study.labels,
                                method="crossnobis", subject=s)["IT"]
                for b, d, s in zip(study.betas, study.design, study.subjects)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # rsatoolbox concat: pattern descriptors
            brain_rdms = {"IT": rsatoolbox.rdm.concat(rdms)}
        brain_patterns = {"IT": patterns}
        print("patterns per subject (observations × voxels):",
              [(p.n_obs, p.n_channel) for p in patterns])
        """),
        md("## A model: the small CNN of notebook 4, trained briefly on the digit task"),
        code("""
        task = load_task_digits(study.stimulus_ids)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.as_tensor(task.images),
                                           torch.as_tensor(task.labels)),
            batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
        torch.manual_seed(0)
        model = DigitCNN()
        fit(model, loader, epochs=3, device=DEVICE, progress=False)
        images = torch.as_tensor(study.images)
        LAYERS = ["conv1", "conv2", "fc1", "fc2"]
        """),
        md("""
        ## The same call, four metrics

        `metric="rsa"` compares layer RDMs with the subjects' RDMs (Pearson r here). The pattern
        metrics tap the layers' activations (stimuli × features) and compare them with each
        subject's mean pattern per stimulus; `stimulus_ids` tells which image is which stimulus.
        Every table has the same columns, plus `metric`; `best` marks the best layer per metric.
        """),
        code("""
        common = dict(stimuli=images, layer_names=LAYERS, n_bootstrap=N_BOOTSTRAP, seed=0,
                      device=DEVICE)
        rsa = compare_layers(model, brain_rdms, method="corr", subject_descriptor="subject",
                             extract_kwargs={"stimulus_ids": study.stimulus_ids,
                                             "progress": False}, **common)
        pattern_tables = [
            compare_layers(model, brain_patterns, metric=metric, metric_kwargs=kwargs,
                           stimulus_ids=study.stimulus_ids, **common)
            for metric, kwargs in [("cka", {"debiased": True}),
                                   ("encoding", {"alphas": np.logspace(0, 6, 7).tolist()}),
                                   ("procrustes", None)]
        ]
        table = pd.concat([rsa, *pattern_tables], ignore_index=True)
        table[["metric", "layer", "similarity", "ci_low", "ci_high", "noise_ceiling_high",
               "best"]]
        """),
        code("""
        fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), sharex=True)
        for ax, (metric, t) in zip(axes, table.groupby("metric", sort=False)):
            x = np.arange(len(t))
            ax.plot(x, t["similarity"], "o-")
            ax.vlines(x, t["ci_low"], t["ci_high"], color="C0", alpha=0.6)  # bootstrap interval
            nc = t["noise_ceiling_high"].iloc[0]
            if np.isfinite(nc):
                ax.axhline(nc, color="grey", ls="--", label="noise ceiling")
                ax.legend(loc="lower right", fontsize=8)
            ax.set_xticks(x, t["layer"])
            ax.set_title(f"{metric} ({t['method'].iloc[0]})", fontsize=10)
            ax.set_xlabel("layer")
        axes[0].set_ylabel("similarity to IT (95% CI)")
        plt.tight_layout()
        plt.show()
        """),
        code("""
        ranks = (table.pivot(index="layer", columns="metric", values="similarity")
                 .loc[LAYERS].rank(ascending=False).astype(int))
        print("rank of each layer per metric (1 = most similar to IT):")
        ranks
        """),
        md("""
        ## Reading it

        In this run the metrics do not agree on the best layer: RSA and Procrustes put `conv1`
        first, CKA and encoding put `fc2` first. Only differences that are large compared with
        the intervals mean anything:

        - **RSA and CKA** give all four layers values within a few hundredths of each other, with
          intervals that overlap: neither ranks the layers, and their "best" flags should not be
          read as a finding. Both compare the geometry of the stimuli, but RSA (`corr`) compares
          centred *distance* profiles while linear CKA compares inner products weighted by
          variance, dominated by a layer's largest principal components. The debiased form used
          here removes CKA's upward bias with 100 stimuli and thousands of features.
        - **Encoding** puts the fully connected layers (`fc1`, `fc2`) a few hundredths above the
          convolutional ones; the intervals overlap, so this is a tendency rather than a settled
          ranking. It asks whether *some* linear read-out of the layer predicts
          each voxel on held-out stimuli, so it is invariant to any invertible linear transform of
          the features: the 10 units of `fc2` carry the digit identity the region responds to,
          and a read-out finds it whatever the geometry of the layer. Its grey line is the
          split-half noise ceiling from the 6 runs: every layer stays well below it.
        - **Procrustes** falls steadily with depth. It aligns the patterns themselves, so it
          penalises a difference in dimensionality that CKA and encoding ignore: `fc2` spans at
          most 10 dimensions, and the best rotation cannot reach the part of the region's
          125-voxel patterns (signal and noise) outside them. Here `similarity` is the cosine of
          the angular distance (higher = closer).

        Which to report depends on the question: RSA and CKA ask whether the *geometry* matches,
        encoding whether the information is *linearly available*, Procrustes whether the patterns
        match up to a rotation. When the intervals of two layers overlap, the table does not
        settle which is better under that metric; the same `seed` gives the same stimulus
        resamples for every layer, so layer differences can be bootstrapped pairwise.
        """),
    ]
