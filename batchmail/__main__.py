from batchmail.cli import main_entry

main_entry()
