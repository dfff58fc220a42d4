/** How a Slurm submission's checkpoint shows in the Runs tree: one line of state, an icon, a tooltip. */
import { ownFailures, shardCounts, type CheckpointStatus } from '../cluster/slurm';

export interface SlurmView {
  label: string;
  description: string;
  tooltip: string;
  icon: string;
}

export function slurmView(s: CheckpointStatus | undefined, label: string, arrayJob: string): SlurmView {
  if (!s) return { label: `Slurm: ${label}`, description: `job ${arrayJob}, submitted`, tooltip: `array job ${arrayJob}`, icon: 'cloud-upload' };
  const n = shardCounts(s);
  const bits = [`${n.done}/${s.tasks.length} shards`];
  if (n.running) bits.push(`${n.running} running`);
  if (n.failed) bits.push(`${n.failed} failed`);
  if (s.state === 'done' || s.merge.state === 'running') bits.push(`merge ${s.merge.state}`);
  const failed = ownFailures(s);
  const tooltip = [
    `array job ${arrayJob}: ${s.state}`,
    ...failed.map((t) => `${t.task === 'merge' ? 'merge' : `task ${t.task}`}: ${t.detail} (log ${t.log})`),
    ...(s.landed ? [`report: ${s.report}`] : []),
  ].join('\n');
  const icon = s.state === 'failed' ? 'error' : s.state === 'done' ? 'pass' : s.state === 'running' ? 'sync~spin' : 'clock';
  return { label: `Slurm: ${label}`, description: `${s.state}: ${bits.join(', ')}`, tooltip, icon };
}
