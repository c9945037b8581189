"""Tutorial 07: a whole-volume searchlight on the demo study, then a group map."""

from _build_notebooks import Cell, code, md, notebook, setup


@notebook("07_searchlight")
def searchlight() -> list[Cell]:
    return [
        md("""
        # 7. Searchlight: where in the brain does a model fit?

        ROI analyses answer *which region*; a searchlight map answers *where*. Around every
        voxel (the **centre**) a small sphere of neighbours gives one RDM, that RDM is compared
        with a model RDM, and the value goes back to the centre: a brain map per model.

        **You will learn** to

        - compute searchlight RDMs from NIfTI betas (`data_adapters.fmri.searchlight_rdms`:
          the same centres, neighbours and RDMs as rsatoolbox's searchlight, batched in torch);
        - turn them into model maps (`brainrdl.searchlight_map`) and test one subject's map
          with a condition-permutation test;
        - check that the map finds the region that was planted in the demo data;
        - make a group map: one-sample t over subjects with a sign-flip permutation test
          (family-wise error controlled by the maximum statistic), and a noise ceiling per
          centre.

        The demo volume is 12 × 14 × 10 voxels with two regions: an early-visual-like box
        (`EVC`, pixel-driven patterns) and an IT-like box (`IT`, digit-category patterns); every
        other voxel holds noise only. Runs in about half a minute.
        """),
        setup("""
        import tempfile

        import nibabel as nib
        from scipy.spatial.distance import pdist

        import brainrdl
        from brainrdl.analysis.searchlight import (
            group_searchlight,
            plot_searchlight,
            searchlight_noise_ceiling,
            searchlight_permutation_test,
        )
        from data_adapters.demo import make_demo_study
        from data_adapters.fmri import searchlight_rdms
        """),
        code("""
        study = make_demo_study(tempfile.mkdtemp(prefix="brainrdl-demo-"), n_stimuli=40,
                                n_runs=4, n_subjects=6, with_bold=False, with_nwb=False)
        atlas = nib.load(study.atlas)
        labels = np.asarray(atlas.dataobj)
        it_roi, evc_roi = labels == study.labels["IT"], labels == study.labels["EVC"]
        print(nib.load(study.betas[0]).shape, "= x, y, z, runs × stimuli;",
              len(study.subjects), "subjects;", it_roi.sum(), "IT voxels,", evc_roi.sum(),
              "EVC voxels")
        """),
        md("""
        ## One subject, the whole volume

        The mask is the whole grid. `radius=3` takes the voxels closer than 3 voxels to the
        centre (93 in a full sphere); with `threshold=1` (the default) every centre's sphere
        must lie inside the mask, as in rsatoolbox. The result is an rsatoolbox `RDMs` with one
        RDM per centre and the centre's flat voxel index as `voxel_index`.
        """),
        code("""
        whole = nib.Nifti1Image(np.ones(labels.shape, np.int8), atlas.affine)
        sl = searchlight_rdms(study.betas[0], study.design[0], mask=whole, radius=3,
                              method="correlation", progress=False)
        print(sl.n_rdm, "searchlight RDMs of", sl.n_cond, "conditions;",
              "first centres:", sl.rdm_descriptors["voxel_index"][:4])
        """),
        md("""
        The model RDMs are the demo's ground truth of subject 1: the noise-free RDM of each
        region. `searchlight_map` returns one NIfTI image per model (Pearson r at every centre).
        """),
        code("""
        models = {"IT-like model": study.ground_truth["IT"],
                  "EVC-like model": study.ground_truth["EVC"]}
        maps = brainrdl.searchlight_map(models, sl, method="corr", mask_img=whole)
        values = {name: np.asarray(img.dataobj) for name, img in maps.items()}
        from scipy.ndimage import binary_dilation
        rim = binary_dilation(it_roi, iterations=2) & ~it_roi & ~evc_roi
        pd.DataFrame({name: {"inside IT": v[it_roi].mean(), "1-2 voxels around IT": v[rim].mean(),
                             "inside EVC": v[evc_roi].mean(),
                             "elsewhere": v[~(it_roi | evc_roi | rim)].mean()}
                      for name, v in values.items()}).round(3)
        """),
        code("""
        for name, img in maps.items():
            plot_searchlight(img, kind="stat", colorbar_label="model fit (Pearson r)",
                             title=name, display_mode="z", cut_coords=[-9, -3, 3],
                             vmax=0.8)
        plt.show()
        """),
        md("""
        Each model fits best in its own region. The table also shows the price of a sphere:
        centres one or two voxels *outside* the IT box still have neighbours inside it, so the
        IT-like map spreads over a rim around the box (the searchlight blurs a region by its
        radius). Elsewhere, where the spheres see noise only, the fit is near 0.

        ## The check: does the map recover the planted region?

        To ask which *centres* belong to a region, restrict the spheres to grey matter: here the
        two regions are the "grey matter", and `truncate_at_boundary=True` keeps only the
        neighbours inside that mask (rsatoolbox's option of the same name), so no sphere mixes
        the two regions with the noise around them.

        `searchlight_permutation_test` relabels the model's conditions 500 times (seeded) and
        takes the maximum fit over all centres of each relabelling: a centre whose fit exceeds
        the 95th percentile of those maxima is significant with the family-wise error over
        centres held at 5 %. The EVC-like patterns also carry some category information, so
        the IT-like model fits there too (weaker); the check therefore asks for centres where
        the IT-like model fits significantly **and** better than the EVC-like model.
        """),
        code("""
        grey = nib.Nifti1Image((labels > 0).astype(np.int8), atlas.affine)
        sl_grey = [searchlight_rdms(b, d, mask=grey, radius=3, truncate_at_boundary=True,
                                    progress=False)
                   for b, d in zip(study.betas, study.design)]
        tests = {name: searchlight_permutation_test(rdm, sl_grey[0], mask_img=grey,
                                                    n_permutations=500, seed=0)
                 for name, rdm in models.items()}
        fit = {name: np.asarray(t.value.dataobj) for name, t in tests.items()}
        it_map = (np.asarray(tests["IT-like model"].significant.dataobj) > 0) & (
            fit["IT-like model"] > fit["EVC-like model"])
        inside = (it_map & it_roi).sum() / it_map.sum()
        covered = (it_map & it_roi).sum() / it_roi.sum()
        print(f"FWE threshold r > {tests['IT-like model'].threshold:.3f} "
              f"({tests['IT-like model'].n_permutations} permutations, seed 0)")
        print(f"IT-like map: {it_map.sum()} centres, {inside:.0%} of them inside the IT ROI, "
              f"covering {covered:.0%} of it")
        assert inside >= 0.9, "the IT-like model should light up inside the IT-like region"
        """),
        code("""
        check = nib.Nifti1Image(np.where(it_map, fit["IT-like model"], 0).astype(np.float32),
                                atlas.affine)
        plot_searchlight(check, kind="stat", title="IT-like model: significant and best",
                         colorbar_label="model fit (Pearson r)", display_mode="z",
                         cut_coords=[-9, -3, 3], vmax=0.8)
        plt.show()
        """),
        md("""
        The printed fractions are the check: the centres where the IT-like model fits
        significantly and best lie inside the IT-like region and cover it.

        ## Group map

        Each simulated subject has its own voxels, noise and, in IT, its own category geometry
        (drawn with its own random stream), so subject 1's RDM is not a model for the others.
        Models shared by all subjects are a **category model** (0 for two digits of the same
        class, 1 otherwise) and a **pixel model** (squared pixel distance between the digit
        images). With a sequence of subjects, `searchlight_map` returns 4D images (one volume
        per subject).
        """),
        code("""
        n = len(study.stimulus_ids)
        category = (study.digit_labels[:, None] != study.digit_labels[None, :]).astype(float)
        pixels = pdist(study.images.reshape(n, -1), "sqeuclidean")
        group_maps = brainrdl.searchlight_map({"category": category, "pixels": pixels},
                                              sl_grey, mask_img=grey)
        print(group_maps["category"].shape, "= x, y, z, subjects")
        cat, pix = (np.asarray(group_maps[k].dataobj) for k in ("category", "pixels"))
        pd.DataFrame({"category": [cat[it_roi].mean(), cat[evc_roi].mean()],
                      "pixels": [pix[it_roi].mean(), pix[evc_roi].mean()]},
                     index=["IT-like ROI", "EVC-like ROI"]).round(3)
        """),
        md("""
        The category model fits both regions (digits of a class also look alike), but better in
        the IT-like one; the pixel model fits the EVC-like region best. The contrast *category
        − pixels* per subject, tested across subjects, separates them. `group_searchlight`
        computes the one-sample t at every voxel and a sign-flip permutation test: flipping the
        sign of whole subject maps is allowed under the null hypothesis, and the maximum |t|
        over voxels of each flip gives family-wise-error-corrected p-values. With 6 subjects
        all 2⁶ = 64 flips are enumerated (exact test; the smallest two-sided p is 2/64).
        """),
        code("""
        contrast = nib.Nifti1Image(cat - pix, grey.affine)
        group = group_searchlight(contrast, mask_img=grey, tail="two-sided", seed=0)
        t = np.asarray(group.t.dataobj)
        sig = np.asarray(group.significant.dataobj) > 0
        pos, neg = sig & (t > 0), sig & (t < 0)
        print(f"{group.n_permutations} sign flips (exact: {group.exact}); "
              f"FWE threshold |t| > {group.threshold:.2f}")
        print(f"category > pixels: {pos.sum()} voxels, {(pos & it_roi).sum() / pos.sum():.0%} "
              "inside the IT-like ROI")
        print(f"pixels > category: {neg.sum()} voxels, {(neg & evc_roi).sum() / neg.sum():.0%} "
              "inside the EVC-like ROI")
        assert (pos & it_roi).sum() / pos.sum() >= 0.9
        """),
        code("""
        shown = nib.Nifti1Image(np.where(sig, t, 0).astype(np.float32), grey.affine)
        plot_searchlight(shown, kind="stat", title="category − pixels, FWE 5 %",
                         colorbar_label="group t (6 subjects)", display_mode="z",
                         cut_coords=[-9, -3, 3])
        plt.show()
        """),
        md("""
        ## Noise ceiling per centre

        How well could any model do at a centre, given how much the subjects' RDMs agree there?
        `searchlight_noise_ceiling` computes, at every centre, rsatoolbox's leave-one-subject-out
        (lower) and all-subjects (upper) bounds.
        """),
        code("""
        lower, upper = searchlight_noise_ceiling(sl_grey, mask_img=grey, method="corr")
        low, up = np.asarray(lower.dataobj), np.asarray(upper.dataobj)
        pd.DataFrame({"lower": [low[it_roi].mean(), low[evc_roi].mean()],
                      "upper": [up[it_roi].mean(), up[evc_roi].mean()],
                      "category model": [cat[it_roi].mean(), cat[evc_roi].mean()]},
                     index=["IT-like ROI", "EVC-like ROI"]).round(3)
        """),
        md("""
        In the IT-like region the category model's mean fit lies between the two bounds: it
        predicts a subject's RDM there at least as well as the other subjects' RDMs do (the
        subjects share the category structure, not the rest of their IT geometry). In the
        EVC-like region it stays far below the lower bound: most of what the subjects share
        there is something else, the pixel-driven structure.

        ## Crossnobis searchlights and scaling out

        `method="crossnobis"` cross-validates across runs (`runs=` or the design's `run`
        column); `noise="shrinkage_diag"` estimates a shrinkage noise precision inside every
        searchlight from the betas' spread around their condition means (or pass GLM
        residuals). Each searchlight equals `brainrdl.calc_rdm` on that neighbourhood's
        Dataset with its own precision (tested).
        """),
        code("""
        cv = searchlight_rdms(study.betas[0], study.design[0], mask=grey, radius=3,
                              truncate_at_boundary=True, method="crossnobis",
                              noise="shrinkage_diag", progress=False)
        cv_map = brainrdl.searchlight_map(study.ground_truth["IT"].get_vectors()[0], cv,
                                          mask_img=grey)  # one RDM in, one image out
        v = np.asarray(cv_map.dataobj)
        print(f"crossnobis IT-like model fit: {v[it_roi].mean():.3f} in IT, "
              f"{v[evc_roi].mean():.3f} in EVC")
        """),
        md("""
        Large volumes: the centres are processed in blocks under `memory_budget` (bytes), on
        any torch `device`; `out="file.h5"` streams the RDMs to HDF5 instead of memory. From the
        command line, `brainrdl searchlight betas.nii.gz --conditions design.tsv --mask
        mask.nii.gz --models models.h5 --out maps/` writes a NIfTI and a PNG per model;
        `torchrun --nproc_per_node=N` splits the blocks over processes or GPUs, and
        `--shard i/N` + `--merge` split them over a SLURM array. Every split gives the same
        maps as one process.
        """),
    ]
