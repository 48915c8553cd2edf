source benchmarks/device/common.sh
step gpu_tests_rest 200 python3 -m pytest -v -n 12 --dist loadgroup -p no:cacheprovider $(cat benchmarks/device/remaining_s32.txt)
grep -cE "PASSED" "$OUT/gpu_tests_rest.log" | sed 's/^/PASSED lines: /' | tee -a "$OUT/summary.txt"
grep -E "FAILED|ERROR| passed| failed" "$OUT/gpu_tests_rest.log" | tail -20 | tee -a "$OUT/summary.txt"
step op_rule 80 python3 benchmarks/bench_bigla.py --methods ours --shapes "ViG-H-T stage1,ViG-T 224" --variants w2:VIG_BIGLA_WALK_WARPS=2 --variant-methods ours --out "$OUT/op_rule"
python3 benchmarks/device/compare_op.py "$OUT/op_rule" | tee "$OUT/op_compare_rule.txt"
bench_t table_t_new 170 --train vig_tiny deit_tiny_patch16_224
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
cd $OUT && tar czf call2.tgz --exclude=call2.tgz --exclude='*.png' .
