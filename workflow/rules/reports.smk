# Reports: every table and figure of both papers as a file target (config `reports:` block).
#   snakemake results/<exp>/tables/hssl_table2.md    runs only the jobs that table needs.


for _target in REPORTS:

    rule:
        name:
            f"report_{_target}"
        input:
            report_inputs_of(_target),
        output:
            [
                (
                    report(
                        path,
                        caption=f"../report/{_target}.rst",
                        category=report_category(_target),
                    )
                    if shown_in_report(path)
                    else path
                )
                for path in report_outputs(_target)
            ],
        log:
            f"{LOGS}/reports/{_target}.log",
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            config=CONFIG,
            settings=medssl_jobs.digest(medssl_jobs.report(config, _target)),
            target=_target,
        shell:
            "medssl report --config {params.config:q} --settings {params.settings:q} --target {params.target:q} --inputs {input:q} "
            "--outputs {output:q} > {log:q} 2>&1"


rule tsne_features:
    input:
        pretrained=features_model,
    output:
        f"{OUT}/{{study}}/features/{{run}}.npz",
    log:
        f"{LOGS}/features/{{study}}/{{run}}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=CONFIG,
        settings=settings_digest("features"),
    shell:
        "medssl features --config {params.config:q} --settings {params.settings:q} --study {wildcards.study:q} --run {wildcards.run:q} "
        "--out {output:q} > {log:q} 2>&1"


rule report_summary:
    input:
        lambda wildcards: summary_inputs(wildcards.study),
    output:
        csv=f"{OUT}/tables/summary_{{study}}.csv",
        md=f"{OUT}/tables/summary_{{study}}.md",
        html=report(
            f"{OUT}/tables/summary_{{study}}.html",
            caption="../report/summary.rst",
            category="Studies without a paper report",
        ),
        png=report(
            f"{OUT}/figures/summary_{{study}}.png",
            caption="../report/summary.rst",
            category="Studies without a paper report",
        ),
    log:
        f"{LOGS}/reports/summary_{{study}}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=CONFIG,
        settings=settings_digest("summary"),
    shell:
        "medssl summary --config {params.config:q} --settings {params.settings:q} --study {wildcards.study:q} "
        "--inputs {input:q} --outputs {output.csv:q} {output.md:q} {output.html:q} {output.png:q} > {log:q} 2>&1"
