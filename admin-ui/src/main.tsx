import { render } from 'preact';
import 'uplot/dist/uPlot.min.css';
import './styles.css';
import { App } from './app';
import { startRouter } from './router';
import { startIdleLock } from './state';

startRouter();
startIdleLock();
render(<App />, document.getElementById('app')!);
